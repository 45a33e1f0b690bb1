"""The dashboard against a live system, in Debian's headless Chromium driven by Playwright.

  dashboard_check.py follow HOME URL TOKEN LLM_CONFIG
      the small world of DashboardTests: the page's model against the log (positions recomputed
      here from `gunnctl tail`, not by gunn), an agent's eyes against GET view, live speech and
      its cancellation (the LLM adapter is attached by hand once the page is open), the replay of
      an entry, the tail, and a kill -9 of the orchestrator.
  dashboard_check.py city HOME URL TOKEN SHOTS_DIR
      the city demo: frames per second with 1,000 agents moving, the adapter's CPU, and three
      screenshots (the whole world, one agent's view, a cancelled bubble).

Prints one JSON line of findings; the Swift test asserts on it. Exits 1 on a step that cannot go on.
"""
import json, os, signal, subprocess, sys, time
from playwright.sync_api import sync_playwright


def gunnctl(home, *args):
    out = subprocess.run(["gunnctl", "--home", home, *args], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise SystemExit("gunnctl %s: %d %s" % (args, out.returncode, out.stderr))
    return out.stdout


def log_entries(home, upto):
    lines = gunnctl(home, "tail", "--json", "--from", "1", "--limit", str(upto)).splitlines()
    return [json.loads(l) for l in lines if l.strip()]


def positions_at(entries, seq):
    """Every entity's position right after `seq`, from the effects themselves (EntityUpsert,
    Move, EntityRemove are the kinds these worlds use; anything else leaves positions alone)."""
    pos = {}
    for e in entries:
        if e["global_seq"] > seq:
            break
        kind, p = e["effect"]["kind"], e["effect"].get("payload", {})
        if kind == "EntityUpsert":
            at = p["entity"].get("pos")
            pos[p["id"]] = (at + [0])[:3] if at and len(at) == 2 else at
        elif kind == "Move":
            to = p["to"]
            pos[p["agent_id"]] = (to + [0])[:3] if len(to) == 2 else to
        elif kind == "EntityRemove":
            pos.pop(p["id"], None)
    return pos


def until(page, expr, seconds=20, what=None):
    try:
        page.wait_for_function(expr, timeout=seconds * 1000, polling=50)
    except Exception as e:
        raise SystemExit("timed out waiting for %s: %s" % (what or expr, e))


def drawn(page):
    """Waits for two more animation frames: what was just changed (a zoom, a scroll) is on screen."""
    f = page.evaluate("gunnDash.stats.frames")
    until(page, "gunnDash.stats.frames >= %d" % (f + 2), what="two frames drawn")


def model_positions(page):
    return page.evaluate("""() => { const m = gunnDash.model, out = {};
        for (const id in m.entities) out[id] = m.entities[id].pos || null;
        return {seq: m.seq, pos: out}; }""")


def open_page(p, url, token, errors, outside, size=(1400, 860)):
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(url) else None)
    page.goto(url + "/#token=" + token)
    until(page, "window.gunnDash && gunnDash.model.connected && Object.keys(gunnDash.model.entities).length > 0", what="the first picture")
    return browser, page


def status(home):
    return json.loads(gunnctl(home, "status", "--json"))


def child(home, name):
    return next(c for c in status(home)["children"] if c["name"] == name)


def follow(home, url, token, llm_config):
    out, errors, outside = {}, [], []
    with sync_playwright() as p:
        browser, page = open_page(p, url, token, errors, outside)
        until(page, "gunnDash.model.entities.eye && gunnDash.model.entities.lamp && gunnDash.model.entities.far", what="the test's entities")

        # 1. The page's world is the log's world at the seq it names.
        snap = model_positions(page)
        entries = log_entries(home, snap["seq"])
        mine = positions_at(entries, snap["seq"])
        out["follow"] = {"seq": snap["seq"], "entities": len(snap["pos"]),
                         "mismatched": sorted(k for k in set(mine) | set(snap["pos"]) if mine.get(k) != snap["pos"].get(k))}
        head = status(home)["log_head"]["seq"]
        until(page, "gunnDash.model.seq >= %d" % head, what="the page reaching the head %d" % head)
        out["caught_up"] = {"head": head, "page": page.evaluate("gunnDash.model.seq")}

        # 2. Through the eyes of `eye`, chosen with the keyboard: exactly its view.
        until(page, "gunnDash.model.agentOrder.includes('eye')", what="eye in the agent list")
        page.focus("#agentfilter")
        page.keyboard.type("eye")
        page.keyboard.press("Tab")
        page.keyboard.press("ArrowDown")
        page.keyboard.press("Enter")
        until(page, "gunnDash.model.eyes && gunnDash.model.eyes.agent_id === 'eye' && gunnDash.model.eyes.known", what="the eyes of eye")
        eyes = page.evaluate("gunnDash.model.eyes")
        world = page.evaluate("gunnDash.model.entities")
        got = page.evaluate("""async ([tok]) => (await fetch('/v1/agents/eye/view', {headers: {Authorization: 'Bearer ' + tok}})).json()""", [token])
        out["eyes"] = {"selected_by_keyboard": page.evaluate("gunnDash.model.selected"),
                       "same_view": json.dumps(eyes["view"], sort_keys=True) == json.dumps(got["view"], sort_keys=True),
                       "same_digest": eyes["context_digest"] == got["context_digest"],
                       "seen": sorted(eyes["view"]["entities"]),
                       "secret_in_world": "secret" in world["lamp"], "secret_in_eyes": "secret" in eyes["view"]["entities"].get("lamp", {}),
                       "far_in_world": "far" in world, "far_in_eyes": "far" in eyes["view"]["entities"],
                       "map_shows": page.evaluate("Object.keys(gunnDash.model.eyes.view.entities).length")}
        page.keyboard.press("Escape")
        until(page, "gunnDash.model.selected === null", what="leaving the eyes")

        # 3. Speech as it happens: A streams, B's remark cancels it, A says its line again.
        llm = subprocess.Popen(["gunn-adapter-llm", "--home", home, "--config", llm_config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            page.evaluate("""() => { window.gunnSeen = {partial: 0};
                setInterval(() => { for (const b of Object.values(gunnDash.model.speech))
                    if (b.agent_id === 'A' && b.state === 'speaking' && b.tokens > 0) gunnSeen.partial = Math.max(gunnSeen.partial, b.tokens); }, 20); }""")
            until(page, "Object.values(gunnDash.model.speech).some(b => b.agent_id === 'A' && b.state === 'cancelled')", 60, "A's cancelled bubble")
            until(page, """(() => { const s = Object.values(gunnDash.model.speech), c = s.find(b => b.agent_id === 'A' && b.state === 'cancelled');
                return s.some(b => b.agent_id === 'A' && b.state === 'said' && b.order > c.order); })()""", 60, "A's regenerated line")
            until(page, "document.querySelector('#speech li.cancelled a[data-seq]') !== null", what="the cancellation in the speech panel")
        finally:
            llm.send_signal(signal.SIGTERM)
            llm.wait(timeout=30)
        cancelled = page.evaluate("Object.values(gunnDash.model.speech).find(b => b.agent_id === 'A' && b.state === 'cancelled')")
        link = page.evaluate("document.querySelector('#speech li.cancelled a[data-seq]').dataset.seq")
        entries = log_entries(home, cancelled["seq"])
        by_seq = {e["global_seq"]: e for e in entries}
        record = by_seq.get(cancelled["seq"], {}).get("effect", {})
        out["speech"] = {"partial_tokens_seen": page.evaluate("gunnSeen.partial"), "reason": cancelled["reason"], "link": int(link),
                         "stale_entry_kind": by_seq.get(int(link), {}).get("effect", {}).get("kind"),
                         "stale_entry_agent": by_seq.get(int(link), {}).get("agent_id"),
                         "log_record": [record.get("kind"), record.get("payload", {}).get("reason")],
                         "struck": page.evaluate("getComputedStyle(document.querySelector('#speech li.cancelled .text')).textDecorationLine")}

        # 4. Click the stale entry's link: the world as it was then, replayed server side.
        page.click("#speech li.cancelled a[data-seq]")
        until(page, "gunnDash.model.replay && gunnDash.model.replay.seq === %d" % int(link), what="the replay")
        replay = page.evaluate("(() => { const r = gunnDash.model.replay, o = {}; for (const id in r.entities) o[id] = r.entities[id].pos || null; return o; })()")
        want = positions_at(log_entries(home, int(link)), int(link))
        out["replay"] = {"seq": int(link), "entities": len(replay), "mismatched": sorted(k for k in set(want) | set(replay) if want.get(k) != replay.get(k))}
        page.click("#live")

        # 5. The tail shows new commits, with the log's own checksums.
        first = page.evaluate("+document.querySelector('#tail button[data-seq]').dataset.seq")
        until(page, "+document.querySelector('#tail button[data-seq]').dataset.seq > %d" % first, what="a new commit in the tail")
        top = page.evaluate("(() => { const b = document.querySelector('#tail button[data-seq]'); return [+b.dataset.seq, b.textContent]; })()")
        entry = log_entries(home, top[0])[-1]
        out["tail"] = {"first": first, "top": top[0], "checksum_shown": entry["checksum"][:12] in top[1], "kind_shown": entry["effect"]["kind"] in top[1]}

        # 6. kill -9 of the orchestrator: the tree shows it restarting, the page goes on by itself
        # (its own stream, to the web adapter, is not even reopened).
        hellos = page.evaluate("gunnDash.model.hellos")
        orch = child(home, "orchestrator")
        until(page, "document.querySelector('[data-child=orchestrator]') !== null", what="the supervision tree")
        before = page.evaluate("+document.querySelector('[data-child=orchestrator]').dataset.restarts")
        os.kill(int(orch["pid"]), signal.SIGKILL)
        until(page, "+document.querySelector('[data-child=orchestrator]').dataset.restarts === %d" % (before + 1), 60, "the restart in the tree")
        until(page, "document.querySelector('[data-child=orchestrator]').dataset.state === 'ready'", 60, "the orchestrator ready again")
        head = status(home)["log_head"]["seq"]
        until(page, "gunnDash.model.seq > %d" % head, 60, "new commits after the restart")
        snap = model_positions(page)
        mine = positions_at(log_entries(home, snap["seq"]), snap["seq"])
        out["restart"] = {"restarts_before": before, "restarts_after": page.evaluate("+document.querySelector('[data-child=orchestrator]').dataset.restarts"),
                          "seq_after": snap["seq"], "head_at_restart": head,
                          "mismatched": sorted(k for k in set(mine) | set(snap["pos"]) if mine.get(k) != snap["pos"].get(k)),
                          "hellos_before": hellos, "hellos_after": page.evaluate("gunnDash.model.hellos")}

        # 7. kill -9 of the log writer: the adapter's subscription resumes after the last entry it
        # had, and the page goes on, still the log's world, with nothing listed twice.
        log = child(home, "eventlog")
        before = page.evaluate("+document.querySelector('[data-child=eventlog]').dataset.restarts")
        os.kill(int(log["pid"]), signal.SIGKILL)
        until(page, "+document.querySelector('[data-child=eventlog]').dataset.restarts === %d" % (before + 1), 60, "the log writer's restart in the tree")
        head = status(home)["log_head"]["seq"]
        until(page, "gunnDash.model.seq > %d" % head, 60, "new commits after the log writer's restart")
        snap = model_positions(page)
        mine = positions_at(log_entries(home, snap["seq"]), snap["seq"])
        seqs = page.evaluate("gunnDash.model.tail.map(e => e.seq)")
        out["log_restart"] = {"restarts_after": page.evaluate("+document.querySelector('[data-child=eventlog]').dataset.restarts"), "restarts_before": before,
                              "seq_after": snap["seq"], "head_at_restart": head, "tail_in_order": seqs == sorted(set(seqs)),
                              "mismatched": sorted(k for k in set(mine) | set(snap["pos"]) if mine.get(k) != snap["pos"].get(k)),
                              "follow_error": page.evaluate("gunnDash.model.followError")}
        browser.close()
    out["console_errors"], out["outside"] = errors, outside
    return out


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def nonblank(page):
    """Distinct colours over a grid of the canvas's pixels: a blank map has one or two."""
    return page.evaluate("""() => { const c = document.getElementById('map'), g = c.getContext('2d'), d = g.getImageData(0, 0, c.width, c.height).data, seen = new Set();
        for (let i = 0; i < d.length; i += 4 * 97) seen.add(d[i] << 16 | d[i + 1] << 8 | d[i + 2]); return seen.size; }""")


def city(home, url, token, shots):
    out, errors, outside = {}, [], []
    with sync_playwright() as p:
        browser, page = open_page(p, url, token, errors, outside)
        until(page, "Object.keys(gunnDash.model.entities).length >= 1003", 120, "the 1,003 agents")
        web = int(child(home, "web")["pid"])
        # Frames per second while the city moves (requestAnimationFrame counts), and the adapter's CPU.
        f0, b0, s0, c0, t0 = page.evaluate("gunnDash.stats.frames"), page.evaluate("gunnDash.stats.batches"), page.evaluate("gunnDash.model.seq"), cpu_seconds(web), time.monotonic()
        # The window is 60 batches of the city's commits (about 6 s), not a fixed time.
        until(page, "gunnDash.stats.batches >= %d" % (b0 + 60), 120, "60 batches of the city moving")
        f1, b1, s1, c1, t1 = page.evaluate("gunnDash.stats.frames"), page.evaluate("gunnDash.stats.batches"), page.evaluate("gunnDash.model.seq"), cpu_seconds(web), time.monotonic()
        out["fps"] = (f1 - f0) / (t1 - t0)
        out["window_s"] = t1 - t0
        out["batches"] = b1 - b0
        out["commits"] = s1 - s0
        out["commits_per_s"] = (s1 - s0) / (t1 - t0)
        out["adapter_cpu"] = (c1 - c0) / (t1 - t0)
        out["agents_moving"] = page.evaluate("Object.keys(gunnDash.model.entities).length")
        # The side panel scrolled to the log and the health tree, beside the whole city.
        page.evaluate("document.querySelector('aside').scrollTop = document.getElementById('h-log').offsetTop - 8")
        drawn(page)
        page.screenshot(path=os.path.join(shots, "dashboard-world.png"))
        page.evaluate("document.querySelector('aside').scrollTop = 0")
        out["world_colours"] = nonblank(page)
        def through(agent, scale, name):
            """The map through `agent`'s eyes at `scale`, saved as `name`; its colours counted."""
            page.evaluate("gunnDash.select('%s')" % agent)
            until(page, "gunnDash.model.eyes && gunnDash.model.eyes.agent_id === '%s' && gunnDash.model.eyes.known" % agent, what="the eyes of " + agent)
            page.evaluate("gunnDash.zoom(%d)" % scale)
            drawn(page)
            page.screenshot(path=os.path.join(shots, name))
            return nonblank(page)
        # One agent's view: a city agent, its 25-unit radius.
        out["eyes_colours"] = through("c0500", 9, "dashboard-eyes.png")
        out["eyes_entities"] = page.evaluate("Object.keys(gunnDash.model.eyes.view.entities).length")
        # A cancelled bubble: A's, interrupted by B in their corner.
        until(page, "Object.values(gunnDash.model.speech).some(b => b.agent_id === 'A' && b.state === 'cancelled')", 60, "A's cancelled bubble")
        out["cancelled_colours"] = through("A", 14, "dashboard-cancelled.png")
        out["cancelled_reason"] = page.evaluate("Object.values(gunnDash.model.speech).find(b => b.agent_id === 'A' && b.state === 'cancelled').reason")
        out["shots"] = {n: os.path.getsize(os.path.join(shots, n)) for n in ("dashboard-world.png", "dashboard-eyes.png", "dashboard-cancelled.png")}
        browser.close()
    out["console_errors"], out["outside"] = errors, outside
    return out


if __name__ == "__main__":
    mode, home, url, token, extra = sys.argv[1:6]
    result = follow(home, url, token, extra) if mode == "follow" else city(home, url, token, extra)
    print(json.dumps(result, sort_keys=True))
