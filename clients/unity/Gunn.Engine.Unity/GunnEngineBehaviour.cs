// A thin Unity wrapper over Gunn.Engine.EngineClient: put it on an empty GameObject, list the
// Rigidbodies that gunn's agents drive (their names are the agents' ids), and it connects, syncs,
// reports each FixedUpdate as a tick with the bodies that moved, forwards collisions, and drives
// each commanded body towards its target until it arrives (done). It is a starting point: a real
// scene also answers blocked and failed (see the Godot client for one way). Only compiled inside
// Unity; the tests compile and run the core without it, under Mono.
#if UNITY_5_3_OR_NEWER
using System;
using System.Collections.Generic;
using UnityEngine;
using Gunn.Engine;

public sealed class GunnEngineBehaviour : MonoBehaviour {
    public string url = "ws://127.0.0.1:8788/v1/engine";
    public string token = "";
    public string engineName = "unity";
    public float speed = 3f;
    public Rigidbody[] bodies;

    EngineClient client;
    ulong tick;
    readonly Dictionary<string, Command> active = new Dictionary<string, Command>();
    readonly Dictionary<string, Vector3> lastSent = new Dictionary<string, Vector3>();
    readonly List<Contact> contacts = new List<Contact>();
    bool running;

    async void Start() {
        client = new EngineClient(new EngineOptions {
            Url = new Uri(url), Token = token, EngineName = engineName,
            EngineVersion = "unity " + Application.unityVersion,
            RecordPath = System.IO.Path.Combine(Application.persistentDataPath, "gunn-commands.jsonl")
        });
        try {
            await client.ConnectAsync();
            await client.WaitForSyncAsync();
            var all = new List<Body>();
            foreach (var rb in bodies) all.Add(ToBody(rb));
            await client.SendBodiesAsync(all);
            await client.CompleteSyncAsync(all.Count);
            running = true;
        } catch (Exception e) {
            Debug.LogError("gunn: " + e.Message);  // EngineStageException names the stage
        }
    }

    static Body ToBody(Rigidbody rb) {
        var p = rb.position;
        return new Body(rb.name, p.x, p.z);
    }

    void FixedUpdate() {
        if (!running) return;
        Command c;
        while (client.TryTakeCommand(out c)) {
            if (c.Kind == "move") active[c.BodyId] = c;
            else _ = client.ReportAsync(c.Seq, "failed", "this scene does only move");
        }
        var moved = new List<Body>();
        foreach (var rb in bodies) {
            Command m;
            if (active.TryGetValue(rb.name, out m)) {
                var target = new Vector3((float)m.To[0], rb.position.y, (float)m.To[1]);
                var d = target - rb.position;
                if (d.magnitude < 0.1f) { rb.velocity = Vector3.zero; active.Remove(rb.name); _ = client.ReportAsync(m.Seq, "done", ""); }
                else rb.velocity = d.normalized * speed;
            }
            Vector3 last;
            if (!lastSent.TryGetValue(rb.name, out last) || (last - rb.position).sqrMagnitude > 1e-6f) {
                lastSent[rb.name] = rb.position;
                moved.Add(ToBody(rb));
            }
        }
        tick++;
        _ = client.TickAsync(tick, Time.fixedTime, moved, new List<Contact>(contacts));
        contacts.Clear();
    }

    /// Forwarded by a GunnContactReporter on each body.
    public void Contact(Rigidbody a, Collision other) {
        if (other.rigidbody == null || string.CompareOrdinal(a.name, other.rigidbody.name) >= 0) return;
        var p = other.GetContact(0).point;
        contacts.Add(new Contact(a.name, other.rigidbody.name, new double[] { p.x, p.z }));
    }

    async void OnDestroy() { if (client != null) await client.CloseAsync(); }
}

/// Put on each body: reports its collisions to the GunnEngineBehaviour.
public sealed class GunnContactReporter : MonoBehaviour {
    public GunnEngineBehaviour bridge;
    void OnCollisionEnter(Collision c) { bridge.Contact(GetComponent<Rigidbody>(), c); }
}
#endif
