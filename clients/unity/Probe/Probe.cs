// A console engine built on the protocol core, for the tests (what a Unity build runs, minus the
// editor): two bodies, commands executed over a few steps, lock-step when gunn asks for it, the
// record file, reconnects. One JSON line per event on stdout.
//   mono probe.exe MODE URL TOKEN RECORD [SECONDS]
//   MODE: run | mismatch | stall-sync | stage-connect | silent (syncs and steps, never answers a command)
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using System.Threading.Tasks;
using Gunn.Engine;

static class Probe {
    static void Out(Dictionary<string, object> o) { Console.WriteLine(MiniJson.Write(o)); Console.Out.Flush(); }

    static int Main(string[] args) {
        try { return Run(args).GetAwaiter().GetResult(); }
        catch (Exception e) { Out(new Dictionary<string, object> { { "event", "crash" }, { "error", e.ToString() } }); return 70; }
    }

    static EngineOptions Options(string url, string token, string record) {
        return new EngineOptions {
            Url = new Uri(url), Token = token, EngineName = "unity", RecordPath = record == "-" ? null : record,
            Capabilities = new[] { "lockstep", "free", "contacts", "custom_commands", "heartbeat", "resume", "teleport_v2" },
            ConnectTimeout = TimeSpan.FromSeconds(2), HelloTimeout = TimeSpan.FromSeconds(5), SyncTimeout = TimeSpan.FromSeconds(5)
        };
    }

    static async Task<int> Run(string[] args) {
        string mode = args[0], url = args[1], token = args[2], record = args[3];
        double seconds = args.Length > 4 ? double.Parse(args[4], System.Globalization.CultureInfo.InvariantCulture) : 20;
        var o = Options(url, token, record);
        if (mode == "mismatch") o.ProtocolMajor = 2;
        if (mode == "stage-connect") o.ConnectTimeout = TimeSpan.FromSeconds(1);
        if (mode != "run" && mode != "silent") {
            var c = new EngineClient(o);
            try {
                await c.ConnectAsync();
                await c.WaitForSyncAsync();
                // stall-sync: the bodies are sent, SyncDone never is; gunn's world_sync deadline ends it.
                await c.SendBodiesAsync(new[] { new Body("U1", 0, 0) });
                await c.Closed;
                Out(new Dictionary<string, object> { { "event", "closed" }, { "errors", Errors(c) } });
                return 0;
            } catch (EngineRefusedException e) {
                Out(new Dictionary<string, object> { { "event", "refused" }, { "code", e.Code }, { "name", e.Name }, { "message", e.Message }, { "close", (long)e.CloseCode } });
                return 0;
            } catch (EngineStageException e) {
                Out(new Dictionary<string, object> { { "event", "stage_timeout" }, { "stage", e.Stage }, { "message", e.Message } });
                return 0;
            }
        }

        // run: connect (again after a loss), sync, step, execute.
        var clock = Stopwatch.StartNew();
        var bodies = new Dictionary<string, Body> { { "U1", new Body("U1", 0, 0) { Commands = new[] { "jump" }, Fields = new Dictionary<string, string> { { "prefab", "Capsule" } } } },
                                                    { "U2", new Body("U2", 10, 0) } };
        ulong tick = 0;
        int sessions = 0;
        while (clock.Elapsed.TotalSeconds < seconds) {
            var c = new EngineClient(o);
            try {
                await c.ConnectAsync();
                sessions++;
                Out(new Dictionary<string, object> { { "event", "welcome" }, { "time_mode", c.TimeMode }, { "capabilities", new List<object>(c.NegotiatedCapabilities) },
                                                     { "session", c.SessionId }, { "last_command", (long)c.LastCommandSeq } });
                int pending = await c.WaitForSyncAsync();
                await c.SendBodiesAsync(new List<Body>(bodies.Values));
                await c.CompleteSyncAsync(bodies.Count);
                Out(new Dictionary<string, object> { { "event", "synced" }, { "pending", (long)pending } });
                var moving = new Dictionary<string, Command>();
                while (c.IsOpen && clock.Elapsed.TotalSeconds < seconds) {
                    Command cmd;
                    while (mode == "silent" && c.TryTakeCommand(out cmd)) Out(new Dictionary<string, object> { { "event", "ignored" }, { "seq", (long)cmd.Seq } });
                    while (c.TryTakeCommand(out cmd)) {
                        Out(new Dictionary<string, object> { { "event", "command" }, { "seq", (long)cmd.Seq }, { "kind", cmd.Kind }, { "body", cmd.BodyId } });
                        if (!bodies.ContainsKey(cmd.BodyId)) { await c.ReportAsync(cmd.Seq, "failed", "no body " + cmd.BodyId); continue; }
                        if (cmd.Kind == "move") moving[cmd.BodyId] = cmd;
                        else { await c.ReportAsync(cmd.Seq, "done", cmd.Kind + " " + (cmd.DataJson ?? "")); Out(Result(cmd, "done")); }
                    }
                    // One step: each moving body goes a fifth of the way; done when there.
                    tick++;
                    var moved = new List<Body>();
                    foreach (var id in new List<string>(moving.Keys)) {
                        var m = moving[id]; var b = bodies[id];
                        b.Pos[0] += (m.To[0] - b.Pos[0]) * 0.2; b.Pos[1] += (m.To[1] - b.Pos[1]) * 0.2;
                        moved.Add(b);
                        if (Math.Abs(m.To[0] - b.Pos[0]) + Math.Abs(m.To[1] - b.Pos[1]) < 0.01) {
                            b.Pos[0] = m.To[0]; b.Pos[1] = m.To[1];
                            moving.Remove(id);
                            await c.ReportAsync(m.Seq, "done", "");
                            Out(Result(m, "done"));
                        }
                    }
                    await c.TickAsync(tick, tick / 60.0, moved, null);
                    if (c.TimeMode == "lockstep") {
                        bool acked = await c.WaitTickAckAsync(tick, TimeSpan.FromSeconds(5));
                        if (tick % 30 == 0 || !acked) Out(new Dictionary<string, object> { { "event", acked ? "acked" : "ack_missing" }, { "tick", (long)tick } });
                    } else {
                        await Task.Delay(16);
                    }
                }
                if (!c.IsOpen) Out(new Dictionary<string, object> { { "event", "lost" }, { "errors", Errors(c) } });
                await c.CloseAsync();
            } catch (EngineRefusedException e) {
                Out(new Dictionary<string, object> { { "event", "refused" }, { "code", e.Code }, { "name", e.Name }, { "message", e.Message } });
            } catch (EngineStageException e) {
                Out(new Dictionary<string, object> { { "event", "stage_timeout" }, { "stage", e.Stage }, { "message", e.Message } });
            } catch (Exception e) {
                Out(new Dictionary<string, object> { { "event", "error" }, { "error", e.GetType().Name + ": " + e.Message } });
            }
            c.Dispose();
            Thread.Sleep(200);  // then reconnect
        }
        Out(new Dictionary<string, object> { { "event", "end" }, { "sessions", (long)sessions }, { "ticks", (long)tick } });
        return 0;
    }

    static Dictionary<string, object> Result(Command c, string status) {
        return new Dictionary<string, object> { { "event", "result" }, { "seq", (long)c.Seq }, { "status", status } };
    }

    static List<object> Errors(EngineClient c) {
        var l = new List<object>();
        lock (c.Errors) foreach (var e in c.Errors) l.Add(e["name"] + ": " + e["message"]);
        return l;
    }
}
