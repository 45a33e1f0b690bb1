// MiniJson: dependency-free JSON for netstandard2.1 / Unity / Mono mcs (the C# 7.2 subset).
// Values: null, bool, long, double, string, List<object>, Dictionary<string,object>. Numbers are
// written and read in the invariant culture; nesting is limited to 64 levels.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace Gunn.Engine {

public sealed class JsonException : Exception { public JsonException(string m) : base(m) { } }

public static class MiniJson {
    public static object Parse(string s) {
        var p = new Parser(s);
        p.Ws(); object v = p.Value(0); p.Ws();
        if (p.Pos != s.Length) throw p.Err("trailing characters");
        return v;
    }

    sealed class Parser {
        readonly string s; public int Pos;
        const int MaxDepth = 64;
        public Parser(string s) { this.s = s; }
        public JsonException Err(string m) { return new JsonException(m + " at offset " + Pos); }
        public void Ws() { while (Pos < s.Length && (s[Pos] == ' ' || s[Pos] == '\t' || s[Pos] == '\n' || s[Pos] == '\r')) Pos++; }
        char Peek() { if (Pos >= s.Length) throw Err("unexpected end"); return s[Pos]; }
        void Expect(string lit) { if (string.CompareOrdinal(s, Pos, lit, 0, lit.Length) != 0) throw Err("expected " + lit); Pos += lit.Length; }
        public object Value(int depth) {
            if (depth > MaxDepth) throw Err("too deep");
            char c = Peek();
            if (c == '{') return Obj(depth);
            if (c == '[') return Arr(depth);
            if (c == '"') return Str();
            if (c == 't') { Expect("true"); return true; }
            if (c == 'f') { Expect("false"); return false; }
            if (c == 'n') { Expect("null"); return null; }
            if (c == '-' || (c >= '0' && c <= '9')) return Num();
            throw Err("unexpected character '" + c + "'");
        }
        Dictionary<string, object> Obj(int depth) {
            var d = new Dictionary<string, object>(StringComparer.Ordinal); Pos++; Ws();
            if (Peek() == '}') { Pos++; return d; }
            while (true) {
                Ws(); if (Peek() != '"') throw Err("expected key");
                string k = Str(); Ws();
                if (Peek() != ':') throw Err("expected ':'"); Pos++; Ws();
                d[k] = Value(depth + 1); Ws();
                char c = Peek(); Pos++;
                if (c == '}') return d;
                if (c != ',') { Pos--; throw Err("expected ',' or '}'"); }
            }
        }
        List<object> Arr(int depth) {
            var l = new List<object>(); Pos++; Ws();
            if (Peek() == ']') { Pos++; return l; }
            while (true) {
                Ws(); l.Add(Value(depth + 1)); Ws();
                char c = Peek(); Pos++;
                if (c == ']') return l;
                if (c != ',') { Pos--; throw Err("expected ',' or ']'"); }
            }
        }
        string Str() {
            Pos++; var sb = new StringBuilder();
            while (true) {
                char c = Peek(); Pos++;
                if (c == '"') return sb.ToString();
                if (c < 0x20) { Pos--; throw Err("control char in string"); }
                if (c != '\\') { sb.Append(c); continue; }
                char e = Peek(); Pos++;
                switch (e) {
                    case '"': sb.Append('"'); break;   case '\\': sb.Append('\\'); break;
                    case '/': sb.Append('/'); break;   case 'b': sb.Append('\b'); break;
                    case 'f': sb.Append('\f'); break;  case 'n': sb.Append('\n'); break;
                    case 'r': sb.Append('\r'); break;  case 't': sb.Append('\t'); break;
                    case 'u':
                        if (Pos + 4 > s.Length) throw Err("bad \\u escape");
                        int cp;
                        if (!int.TryParse(s.Substring(Pos, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out cp)) throw Err("bad \\u escape");
                        sb.Append((char)cp); Pos += 4; break;   // surrogate pairs pass through as two chars
                    default: throw Err("bad escape");
                }
            }
        }
        object Num() {
            int start = Pos; bool isFloat = false;
            if (s[Pos] == '-') Pos++;
            while (Pos < s.Length) {
                char c = s[Pos];
                if (c >= '0' && c <= '9') { Pos++; continue; }
                if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') { isFloat = true; Pos++; continue; }
                break;
            }
            string t = s.Substring(start, Pos - start);
            long l;
            if (!isFloat && long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out l)) return l;
            double d;
            if (double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out d)) return d;
            Pos = start; throw Err("bad number '" + t + "'");
        }
    }

    public static string Write(object v) { var sb = new StringBuilder(); Write(sb, v); return sb.ToString(); }

    public static void Write(StringBuilder sb, object v) {
        if (v == null) { sb.Append("null"); return; }
        var str = v as string; if (str != null) { WriteString(sb, str); return; }
        if (v is bool) { sb.Append((bool)v ? "true" : "false"); return; }
        if (v is int || v is long || v is short || v is byte || v is uint || v is ulong) { sb.Append(Convert.ToString(v, CultureInfo.InvariantCulture)); return; }
        if (v is double || v is float) {
            double d = Convert.ToDouble(v, CultureInfo.InvariantCulture);
            if (double.IsNaN(d) || double.IsInfinity(d)) throw new JsonException("NaN/Infinity not representable");
            sb.Append(d.ToString("R", CultureInfo.InvariantCulture)); return;
        }
        var dict = v as IDictionary<string, object>;
        if (dict != null) {
            sb.Append('{'); bool first = true;
            foreach (var kv in dict) { if (!first) sb.Append(','); first = false; WriteString(sb, kv.Key); sb.Append(':'); Write(sb, kv.Value); }
            sb.Append('}'); return;
        }
        var list = v as System.Collections.IEnumerable;
        if (list != null) {
            sb.Append('['); bool first = true;
            foreach (var x in list) { if (!first) sb.Append(','); first = false; Write(sb, x); }
            sb.Append(']'); return;
        }
        throw new JsonException("unsupported type " + v.GetType());
    }

    static void WriteString(StringBuilder sb, string s) {
        sb.Append('"');
        foreach (char c in s) {
            switch (c) {
                case '"': sb.Append("\\\""); break; case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break; case '\r': sb.Append("\\r"); break; case '\t': sb.Append("\\t"); break;
                default:
                    if (c < 0x20) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}

}
