// The protocol core of gunn's engine bridge for C# engines (Unity first): a WebSocket client of
// gunn-adapter-unity speaking gunn.engine.v1+json (the proto3 JSON mapping of
// proto/gunn/v1/engine.proto), the handshake with staged deadlines, the command queue and the
// engine's own record of executed commands. No UnityEngine, no NuGet: netstandard2.1 C#, and the
// C# 7.2 subset that Mono's mcs compiles (see clients/unity/README.md).
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Net.WebSockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace Gunn.Engine {

/// A stage of the handshake did not finish in time; Stage is "connect", "hello" or "world_sync".
public sealed class EngineStageException : Exception {
    public readonly string Stage;
    public EngineStageException(string stage, TimeSpan after, string detail)
        : base("stage " + stage + " timed out after " + (long)after.TotalMilliseconds + " ms: " + detail) { Stage = stage; }
}

/// gunn refused the engine: an error frame (Code, Name from docs/errors.md) and the close code.
public sealed class EngineRefusedException : Exception {
    public readonly long Code; public readonly string Name; public readonly int CloseCode;
    public EngineRefusedException(long code, string name, string message, int closeCode)
        : base(name + " (" + code + "): " + message) { Code = code; Name = name; CloseCode = closeCode; }
}

public sealed class Body {
    public string Id; public double[] Pos; public Dictionary<string, string> Fields; public string[] Commands;
    public Body(string id, double x, double y) { Id = id; Pos = new[] { x, y }; }
}

public sealed class Contact {
    public string A, B; public double[] At;
    public Contact(string a, string b, double[] at) { A = a; B = b; At = at; }
}

/// A command gunn sent: the global_seq of its EngineCommand effect is its id.
public sealed class Command {
    public ulong Seq; public string BodyId; public string Kind; public double[] To; public string DataJson; public ulong GlobalSeq;
}

/// One line of the engine's record: a command it executed and how it ended.
public sealed class CommandRecord {
    public ulong Seq; public string Status; public string Reason;
}

public sealed class EngineOptions {
    public Uri Url;
    public string Token = "";
    public string EngineName = "unity";
    public string EngineVersion = "gunn-engine-cs 1.0";
    public uint ProtocolMajor = 1, ProtocolMinor = 0;
    public string[] Capabilities = { "lockstep", "free", "contacts", "custom_commands", "heartbeat", "resume" };
    public TimeSpan ConnectTimeout = TimeSpan.FromSeconds(5);
    public TimeSpan HelloTimeout = TimeSpan.FromSeconds(5);
    public TimeSpan SyncTimeout = TimeSpan.FromSeconds(5);
    public TimeSpan HeartbeatInterval = TimeSpan.FromSeconds(1);
    /// The record file (JSON lines); null keeps it in memory only (no resume after a restart).
    public string RecordPath;
}

public sealed class EngineClient : IDisposable {
    public const string Subprotocol = "gunn.engine.v1+json";
    const int MaxResults = 64;

    readonly EngineOptions options;
    readonly Dictionary<ulong, CommandRecord> record = new Dictionary<ulong, CommandRecord>();
    readonly List<CommandRecord> recent = new List<CommandRecord>();
    readonly ConcurrentQueue<Command> commands = new ConcurrentQueue<Command>();
    readonly HashSet<ulong> queued = new HashSet<ulong>();
    readonly SemaphoreSlim sendLock = new SemaphoreSlim(1, 1);
    readonly object gate = new object();
    ClientWebSocket ws;
    TaskCompletionSource<Dictionary<string, object>> welcome, sync;
    readonly Dictionary<ulong, TaskCompletionSource<bool>> tickAcks = new Dictionary<ulong, TaskCompletionSource<bool>>();
    Dictionary<string, object> lastError;
    Task receiving;
    CancellationTokenSource life;

    public string TimeMode { get; private set; }
    public string[] NegotiatedCapabilities { get; private set; }
    public string SessionId { get; private set; }
    public ulong LastCommandSeq { get; private set; }
    /// Error frames gunn sent (code, name, message, ref), newest last.
    public readonly List<Dictionary<string, object>> Errors = new List<Dictionary<string, object>>();
    public bool IsOpen { get { var w = ws; return w != null && w.State == WebSocketState.Open; } }

    public EngineClient(EngineOptions options) {
        this.options = options;
        if (options.RecordPath != null && File.Exists(options.RecordPath)) {
            foreach (var line in File.ReadAllLines(options.RecordPath)) {
                if (line.Trim().Length == 0) continue;
                var o = MiniJson.Parse(line) as Dictionary<string, object>;
                if (o == null) continue;
                var r = new CommandRecord { Seq = ToULong(o["seq"]), Status = (string)o["status"], Reason = o.ContainsKey("reason") ? (string)o["reason"] : "" };
                Remember(r);
            }
        }
    }

    void Remember(CommandRecord r) {
        record[r.Seq] = r;
        if (r.Seq > LastCommandSeq) LastCommandSeq = r.Seq;
        recent.Add(r);
        if (recent.Count > MaxResults) recent.RemoveAt(0);
    }

    static ulong ToULong(object v) {
        if (v is long) return (ulong)(long)v;
        if (v is double) return (ulong)(double)v;
        var s = v as string;
        return s == null ? 0UL : ulong.Parse(s, CultureInfo.InvariantCulture);
    }

    static double[] ToDoubles(object v) {
        var l = v as List<object>;
        if (l == null) return new double[0];
        var d = new double[l.Count];
        for (int i = 0; i < l.Count; i++) d[i] = Convert.ToDouble(l[i], CultureInfo.InvariantCulture);
        return d;
    }

    /// Stages connect and hello: the upgrade, then Hello and its Welcome. A refusal (version,
    /// token, breaker) throws EngineRefusedException with gunn's code; a stage past its deadline
    /// throws EngineStageException naming the stage.
    public async Task ConnectAsync() {
        life = new CancellationTokenSource();
        ws = new ClientWebSocket();
        ws.Options.AddSubProtocol(Subprotocol);
        ws.Options.KeepAliveInterval = TimeSpan.Zero;  // gunn's heartbeats, not WebSocket pings
        welcome = new TaskCompletionSource<Dictionary<string, object>>();
        sync = new TaskCompletionSource<Dictionary<string, object>>();
        lastError = null;
        var connect = ws.ConnectAsync(options.Url, CancellationToken.None);
        if (await Task.WhenAny(connect, Task.Delay(options.ConnectTimeout)).ConfigureAwait(false) != connect) {
            // Mono ignores a cancellation while it waits for the 101; abandon the attempt.
            ws.Abort();
            connect.ContinueWith(t => { var ignored = t.Exception; }, TaskContinuationOptions.OnlyOnFaulted);
            throw new EngineStageException("connect", options.ConnectTimeout, "no WebSocket upgrade from " + options.Url);
        }
        await connect.ConfigureAwait(false);
        if (ws.SubProtocol != Subprotocol) throw new EngineRefusedException(1019, "WEBSOCKET_HANDSHAKE_FAILED", "the server chose no gunn subprotocol", 0);
        receiving = ReceiveLoop();
        var results = new List<object>();
        lock (gate) { foreach (var r in recent) results.Add(ResultJson(r)); }
        await SendAsync(Frame("hello", new Dictionary<string, object> {
            { "engineName", options.EngineName }, { "engineVersion", options.EngineVersion },
            { "protocolMajor", (long)options.ProtocolMajor }, { "protocolMinor", (long)options.ProtocolMinor },
            { "capabilities", new List<object>(options.Capabilities) }, { "token", options.Token },
            { "lastCommandSeq", LastCommandSeq.ToString(CultureInfo.InvariantCulture) }, { "results", results } })).ConfigureAwait(false);
        var w = await Stage("hello", welcome.Task, options.HelloTimeout, "no welcome").ConfigureAwait(false);
        TimeMode = w.ContainsKey("timeMode") ? (string)w["timeMode"] : "free";
        SessionId = w.ContainsKey("sessionId") ? (string)w["sessionId"] : "";
        var caps = new List<string>();
        if (w.ContainsKey("capabilities")) foreach (var c in (List<object>)w["capabilities"]) caps.Add((string)c);
        NegotiatedCapabilities = caps.ToArray();
        _ = Task.Run(() => HeartbeatLoop(life.Token));
    }

    async Task<T> Stage<T>(string stage, Task<T> task, TimeSpan timeout, string what) {
        var done = await Task.WhenAny(task, Task.Delay(timeout)).ConfigureAwait(false);
        if (done == task) return await task.ConfigureAwait(false);
        throw new EngineStageException(stage, timeout, what);
    }

    /// Stage world_sync: gunn's WorldSync (the commands still pending for this engine, which the
    /// queue then holds, less those the record says were done: those are answered again).
    public async Task<int> WaitForSyncAsync() {
        var s = await Stage("world_sync", sync.Task, options.SyncTimeout, "no world sync").ConfigureAwait(false);
        int n = 0;
        if (s.ContainsKey("commands")) foreach (var c in (List<object>)s["commands"]) { if (Take((Dictionary<string, object>)c)) n++; }
        return n;
    }

    public Task SendBodiesAsync(IList<Body> bodies) {
        var list = new List<object>();
        foreach (var b in bodies) list.Add(BodyJson(b));
        return SendAsync(Frame("bodies", new Dictionary<string, object> { { "bodies", list } }));
    }

    public Task CompleteSyncAsync(int bodies) {
        return SendAsync(Frame("syncDone", new Dictionary<string, object> { { "bodies", (long)bodies } }));
    }

    /// The next command to execute, if any (call from the engine's update).
    public bool TryTakeCommand(out Command c) { return commands.TryDequeue(out c); }

    /// Records how a command ended (in the record file first), then tells gunn.
    public Task ReportAsync(ulong seq, string status, string reason) {
        var r = new CommandRecord { Seq = seq, Status = status, Reason = reason ?? "" };
        lock (gate) {
            Remember(r);
            queued.Remove(seq);
            if (options.RecordPath != null)
                File.AppendAllText(options.RecordPath, MiniJson.Write(new Dictionary<string, object> { { "seq", (long)seq }, { "status", status }, { "reason", r.Reason } }) + "\n");
        }
        return SendAsync(Frame("commandResult", ResultJson(r)));
    }

    /// One physics step: the bodies that moved and the contacts in it. In lock-step mode, wait
    /// with WaitTickAckAsync before the next step.
    public Task TickAsync(ulong tick, double simTime, IList<Body> moved, IList<Contact> contacts) {
        // Only lock-step waits for acks; in free mode nothing is kept per tick.
        if (TimeMode == "lockstep") lock (gate) { if (!tickAcks.ContainsKey(tick)) tickAcks[tick] = new TaskCompletionSource<bool>(); }
        var b = new List<object>();
        if (moved != null) foreach (var x in moved) b.Add(BodyJson(x));
        var c = new List<object>();
        if (contacts != null) foreach (var x in contacts) c.Add(new Dictionary<string, object> { { "a", x.A }, { "b", x.B }, { "at", new List<object> { x.At[0], x.At[1] } } });
        return SendAsync(Frame("tick", new Dictionary<string, object> { { "tick", tick.ToString(CultureInfo.InvariantCulture) }, { "simTime", simTime }, { "bodies", b }, { "contacts", c } }));
    }

    public async Task<bool> WaitTickAckAsync(ulong tick, TimeSpan timeout) {
        TaskCompletionSource<bool> t;
        lock (gate) { if (!tickAcks.TryGetValue(tick, out t)) return false; }
        var done = await Task.WhenAny(t.Task, Task.Delay(timeout)).ConfigureAwait(false);
        lock (gate) tickAcks.Remove(tick);
        return done == t.Task;
    }

    /// Sends raw text (for tests of bad input).
    public Task SendRawAsync(string text) { return SendText(text); }

    public async Task CloseAsync() {
        if (life != null) life.Cancel();
        var w = ws;
        if (w != null && w.State == WebSocketState.Open) {
            try { await w.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None).ConfigureAwait(false); } catch (Exception) { }
        }
    }

    /// Waits until the connection ends (gunn closed it, or it was lost).
    public Task Closed { get { return receiving ?? Task.FromResult(0); } }

    public void Dispose() { if (ws != null) ws.Dispose(); }

    // --- frames ---

    static Dictionary<string, object> Frame(string body, Dictionary<string, object> value) {
        return new Dictionary<string, object> { { body, value } };
    }

    static Dictionary<string, object> ResultJson(CommandRecord r) {
        var o = new Dictionary<string, object> { { "commandSeq", r.Seq.ToString(CultureInfo.InvariantCulture) }, { "status", r.Status } };
        if (!string.IsNullOrEmpty(r.Reason)) o["reason"] = r.Reason;
        return o;
    }

    static Dictionary<string, object> BodyJson(Body b) {
        var o = new Dictionary<string, object> { { "id", b.Id }, { "pos", new List<object> { b.Pos[0], b.Pos[1] } } };
        if (b.Fields != null) { var f = new Dictionary<string, object>(); foreach (var kv in b.Fields) f[kv.Key] = kv.Value; o["fields"] = f; }
        if (b.Commands != null) o["commands"] = new List<object>(b.Commands);
        return o;
    }

    Task SendAsync(Dictionary<string, object> frame) { return SendText(MiniJson.Write(frame)); }

    async Task SendText(string text) {
        var bytes = Encoding.UTF8.GetBytes(text);
        await sendLock.WaitAsync().ConfigureAwait(false);
        try {
            var w = ws;
            if (w == null || w.State != WebSocketState.Open) return;
            await w.SendAsync(new ArraySegment<byte>(bytes), WebSocketMessageType.Text, true, CancellationToken.None).ConfigureAwait(false);
        } catch (WebSocketException) {
            // The receive loop sees the loss and ends.
        } finally { sendLock.Release(); }
    }

    /// A command from gunn: queued once; one the record holds is answered again, not executed.
    bool Take(Dictionary<string, object> c) {
        var cmd = new Command {
            Seq = ToULong(c["commandSeq"]), BodyId = c.ContainsKey("bodyId") ? (string)c["bodyId"] : "",
            Kind = c.ContainsKey("kind") ? (string)c["kind"] : "move", To = c.ContainsKey("to") ? ToDoubles(c["to"]) : new double[0],
            DataJson = c.ContainsKey("dataJson") ? (string)c["dataJson"] : null, GlobalSeq = c.ContainsKey("globalSeq") ? ToULong(c["globalSeq"]) : 0
        };
        CommandRecord done;
        lock (gate) {
            if (record.TryGetValue(cmd.Seq, out done)) { }
            else if (!queued.Add(cmd.Seq)) return false;
        }
        if (done != null) { _ = SendAsync(Frame("commandResult", ResultJson(done))); return false; }
        commands.Enqueue(cmd);
        return true;
    }

    async Task ReceiveLoop() {
        var buffer = new ArraySegment<byte>(new byte[16384]);
        var w = ws;
        int closeCode = 0;
        try {
            while (w.State == WebSocketState.Open) {
                using (var ms = new MemoryStream()) {
                    WebSocketReceiveResult r;
                    do {
                        r = await w.ReceiveAsync(buffer, CancellationToken.None).ConfigureAwait(false);
                        if (r.MessageType == WebSocketMessageType.Close) { closeCode = r.CloseStatus.HasValue ? (int)r.CloseStatus.Value : 0; goto closed; }
                        ms.Write(buffer.Array, buffer.Offset, r.Count);
                    } while (!r.EndOfMessage);
                    // A frame this client cannot read is skipped; the connection goes on.
                    try { Dispatch(Encoding.UTF8.GetString(ms.ToArray())); }
                    catch (JsonException) { }
                    catch (InvalidCastException) { }
                    catch (KeyNotFoundException) { }
                    catch (FormatException) { }
                }
            }
        } catch (WebSocketException) { }
        catch (ObjectDisposedException) { }
        closed:
        if (closeCode != 0 && w.State == WebSocketState.CloseReceived) {
            try { await w.CloseAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None).ConfigureAwait(false); } catch (Exception) { }
        }
        Exception refusal;
        var e = lastError;
        if (e != null) refusal = new EngineRefusedException(Convert.ToInt64(e["code"], CultureInfo.InvariantCulture), (string)e["name"], (string)e["message"], closeCode);
        else refusal = new EngineRefusedException(5003, "UNITY_CONNECTION_LOST", "the connection closed (" + closeCode + ")", closeCode);
        welcome.TrySetException(refusal);
        sync.TrySetException(refusal);
        lock (gate) { foreach (var t in tickAcks.Values) t.TrySetResult(false); }
        if (life != null) life.Cancel();
    }

    void Dispatch(string text) {
        var f = MiniJson.Parse(text) as Dictionary<string, object>;
        if (f == null) return;
        object v;
        if (f.TryGetValue("welcome", out v)) welcome.TrySetResult((Dictionary<string, object>)v);
        else if (f.TryGetValue("sync", out v)) sync.TrySetResult((Dictionary<string, object>)v);
        else if (f.TryGetValue("command", out v)) Take((Dictionary<string, object>)v);
        else if (f.TryGetValue("tickAck", out v)) {
            var tick = ToULong(((Dictionary<string, object>)v)["tick"]);
            TaskCompletionSource<bool> t;
            lock (gate) { if (tickAcks.TryGetValue(tick, out t)) t.TrySetResult(true); }
        } else if (f.TryGetValue("heartbeat", out v)) {
            var h = (Dictionary<string, object>)v;
            if (!h.ContainsKey("reply")) { _ = SendAsync(Frame("heartbeat", new Dictionary<string, object> { { "nonce", h.ContainsKey("nonce") ? h["nonce"] : "0" }, { "reply", true } })); }
        } else if (f.TryGetValue("error", out v)) {
            var e = (Dictionary<string, object>)v;
            lock (gate) Errors.Add(e);
            lastError = e;
        }
    }

    async Task HeartbeatLoop(CancellationToken ct) {
        long nonce = 0;
        while (!ct.IsCancellationRequested) {
            try { await Task.Delay(options.HeartbeatInterval, ct).ConfigureAwait(false); } catch (TaskCanceledException) { return; }
            nonce++;
            await SendAsync(Frame("heartbeat", new Dictionary<string, object> { { "nonce", nonce.ToString(CultureInfo.InvariantCulture) } })).ConfigureAwait(false);
        }
    }
}

}
