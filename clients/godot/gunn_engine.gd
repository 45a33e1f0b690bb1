# gunn's engine bridge from Godot 3 (headless or not): Godot owns the bodies and their physics,
# gunn owns the agents and the log. Protocol: proto/gunn/v1/engine.proto over a WebSocket with the
# subprotocol gunn.engine.v1+json (the proto3 JSON mapping). docs/engine.md.
#
#   godot3-server --path clients/godot -s gunn_engine.gd -- --url=ws://HOST:PORT/v1/engine
#       --token=TOKEN [--engine=godot] [--scene=FILE.json] [--record=FILE.jsonl] [--seconds=N]
#
# --scene: {"bodies": [{"id": "A", "pos": [x, y], "radius": r, "static": false}], "speed": s}
# --record: the engine's own record of the commands it executed, one JSON line each; read at the
#   start (after a restart it says which commands were done) and appended to.
# stdout: one JSON line per event ({"event": "welcome" | "contact" | "command" | "result" | ...}).
extends SceneTree

const PROTOCOL = "gunn.engine.v1+json"
const MAX_RESULTS = 64

var url = "ws://127.0.0.1:8788/v1/engine"
var token = ""
var engine_name = "godot"
var scene_path = ""
var record_path = ""
var seconds = 0.0
var speed = 3.0

var ws = WebSocketClient.new()
var connected = false
var running = false
var closing_for_retry = false
var retry_at = 0.0
var clock = 0.0
var tick = 0
var sim_time = 0.0
var last_heard = 0.0
var heartbeat_at = 0.0
var nonce = 0

var bodies = {}        # id -> RigidBody2D
var last_sent = {}     # id -> [x, y] last reported
var contacts = []      # contacts since the last tick
var queues = {}        # body id -> [command, ...] waiting
var active = {}        # body id -> the command being executed
var executed = {}      # command_seq (int) -> {"status", "reason", "pos"} (the record)
var last_command = 0
var recent = []        # the newest results, for a Hello after a reconnect

func _init():
	for a in OS.get_cmdline_args():
		if a.begins_with("--url="): url = a.substr(6)
		elif a.begins_with("--token="): token = a.substr(8)
		elif a.begins_with("--engine="): engine_name = a.substr(9)
		elif a.begins_with("--scene="): scene_path = a.substr(8)
		elif a.begins_with("--record="): record_path = a.substr(9)
		elif a.begins_with("--seconds="): seconds = float(a.substr(10))
	read_record()
	build_scene()
	ws.connect("connection_established", self, "_on_open")
	ws.connect("connection_error", self, "_on_error")
	ws.connect("connection_closed", self, "_on_closed")
	ws.connect("server_close_request", self, "_on_close_request")
	ws.connect("data_received", self, "_on_data")
	dial()

func out(d):
	print(JSON.print(d))

func dial():
	connected = false
	running = false
	var err = ws.connect_to_url(url, PoolStringArray([PROTOCOL]))
	if err != OK:
		out({"event": "dial_failed", "error": err})
		retry_at = clock + 0.5

func read_record():
	if record_path == "":
		return
	var f = File.new()
	if not f.file_exists(record_path):
		return
	f.open(record_path, File.READ)
	while not f.eof_reached():
		var line = f.get_line()
		if line == "":
			continue
		var p = JSON.parse(line)
		if p.error != OK:
			continue
		var r = p.result
		var seq = int(r["seq"])
		executed[seq] = r
		last_command = max(last_command, seq)
		remember(r)
	f.close()

func append_record(r):
	if record_path == "":
		return
	var f = File.new()
	if f.file_exists(record_path):
		f.open(record_path, File.READ_WRITE)
		f.seek_end()
	else:
		f.open(record_path, File.WRITE)
	f.store_line(JSON.print(r))
	f.close()

func remember(r):
	recent.append(r)
	while recent.size() > MAX_RESULTS:
		recent.pop_front()

func build_scene():
	var scene = {"bodies": [{"id": "A", "pos": [0, 0], "radius": 0.5}, {"id": "B", "pos": [6, 0], "radius": 0.5}]}
	if scene_path != "":
		var f = File.new()
		f.open(scene_path, File.READ)
		var p = JSON.parse(f.get_as_text())
		f.close()
		if p.error == OK:
			scene = p.result
	if scene.has("speed"):
		speed = float(scene["speed"])
	for b in scene["bodies"]:
		var body = RigidBody2D.new()
		body.name = b["id"]
		body.position = Vector2(b["pos"][0], b["pos"][1])
		body.gravity_scale = 0.0
		body.can_sleep = false
		body.contact_monitor = true
		body.contacts_reported = 8
		if b.has("static") and b["static"]:
			body.mode = RigidBody2D.MODE_STATIC
		var shape = CollisionShape2D.new()
		shape.shape = CircleShape2D.new()
		shape.shape.radius = float(b.get("radius", 0.5))
		body.add_child(shape)
		body.connect("body_entered", self, "_on_contact", [b["id"]])
		root.add_child(body)
		bodies[b["id"]] = body

func send(frame):
	if not connected:
		return
	var peer = ws.get_peer(1)
	peer.set_write_mode(WebSocketPeer.WRITE_MODE_TEXT)
	peer.put_packet(JSON.print(frame).to_utf8())

func body_json(id):
	var p = bodies[id].position
	return {"id": id, "pos": [p.x, p.y], "fields": {"shape": "circle", "engine_kind": "RigidBody2D"}}

func result_json(r):
	var o = {"commandSeq": str(r["seq"]), "status": r["status"]}
	if r.has("reason") and r["reason"] != "":
		o["reason"] = r["reason"]
	if r.has("pos"):
		o["pos"] = r["pos"]
	return o

func _on_open(protocol):
	connected = true
	last_heard = clock
	var results = []
	for r in recent:
		results.append(result_json(r))
	out({"event": "open", "protocol": protocol})
	send({"hello": {"engineName": engine_name, "engineVersion": "godot " + Engine.get_version_info()["string"],
		"protocolMajor": 1, "protocolMinor": 0, "capabilities": ["free", "contacts", "heartbeat", "resume"],
		"token": token, "lastCommandSeq": str(last_command), "results": results}})

func _on_error():
	out({"event": "connection_error"})
	connected = false
	running = false
	retry_at = clock + 0.5

func _on_closed(clean):
	out({"event": "closed", "clean": clean})
	connected = false
	running = false
	retry_at = clock + 0.5

func _on_close_request(code, reason):
	out({"event": "close_request", "code": code, "reason": reason})

func _on_data():
	var peer = ws.get_peer(1)
	while peer.get_available_packet_count() > 0:
		var text = peer.get_packet().get_string_from_utf8()
		last_heard = clock
		var p = JSON.parse(text)
		if p.error != OK or typeof(p.result) != TYPE_DICTIONARY:
			out({"event": "bad_frame", "text": text.substr(0, 200)})
			continue
		handle(p.result)

func handle(f):
	if f.has("welcome"):
		out({"event": "welcome", "time_mode": f["welcome"].get("timeMode", ""), "capabilities": f["welcome"].get("capabilities", [])})
	elif f.has("sync"):
		var s = f["sync"]
		var all = []
		for id in bodies:
			all.append(body_json(id))
			last_sent[id] = [bodies[id].position.x, bodies[id].position.y]
		send({"bodies": {"bodies": all}})
		for c in s.get("commands", []):
			take_command(c)
		send({"syncDone": {"bodies": bodies.size()}})
		running = true
		out({"event": "synced", "pending": s.get("commands", []).size()})
	elif f.has("command"):
		take_command(f["command"])
	elif f.has("heartbeat"):
		var h = f["heartbeat"]
		if not h.get("reply", false):
			send({"heartbeat": {"nonce": h.get("nonce", "0"), "reply": true}})
	elif f.has("error"):
		out({"event": "error", "code": f["error"].get("code", 0), "name": f["error"].get("name", ""), "message": f["error"].get("message", "")})
	elif f.has("tickAck"):
		pass

# A command already executed (the record says so) is answered again, never run twice.
func take_command(c):
	var seq = int(c["commandSeq"])
	if executed.has(seq):
		out({"event": "command_again", "seq": seq})
		send({"commandResult": result_json(executed[seq])})
		return
	for id in active:
		if active[id]["seq"] == seq:
			return
	for id in queues:
		for q in queues[id]:
			if q["seq"] == seq:
				return
	var id = c.get("bodyId", "")
	if not bodies.has(id):
		finish_command({"seq": seq, "body": id}, "failed", "no body " + id + " in this scene")
		return
	var cmd = {"seq": seq, "body": id, "kind": c.get("kind", "move"), "to": c.get("to", []), "ticks": 0, "best": 1e9, "stalled": 0, "touched": false}
	out({"event": "command", "seq": seq, "body": id, "kind": cmd["kind"], "to": cmd["to"]})
	if not queues.has(id):
		queues[id] = []
	queues[id].append(cmd)

func finish_command(cmd, status, reason):
	var pos = []
	if bodies.has(cmd["body"]):
		pos = [bodies[cmd["body"]].position.x, bodies[cmd["body"]].position.y]
	var r = {"seq": cmd["seq"], "body": cmd["body"], "status": status, "reason": reason, "pos": pos}
	executed[cmd["seq"]] = r
	last_command = max(last_command, cmd["seq"])
	remember(r)
	append_record(r)
	out({"event": "result", "seq": cmd["seq"], "body": cmd["body"], "status": status, "reason": reason})
	send({"commandResult": result_json(r)})

func _on_contact(other, id):
	if not bodies.has(other.name):
		return
	for b in active:
		if b == id or b == other.name:
			active[b]["touched"] = true
	# Each contact is reported by both bodies; one Contact per pair.
	if id < other.name:
		var p = (bodies[id].position + other.position) / 2
		contacts.append({"a": id, "b": other.name, "at": [p.x, p.y]})
		out({"event": "contact", "a": id, "b": other.name, "tick": tick})

func _idle(delta):
	clock += delta
	if seconds > 0 and clock > seconds:
		quit(0)
	ws.poll()
	if not connected and retry_at > 0 and clock >= retry_at:
		retry_at = 0
		dial()
	if connected and running and clock - heartbeat_at > 1.0:
		heartbeat_at = clock
		nonce += 1
		send({"heartbeat": {"nonce": str(nonce)}})

# One physics step: drive the commanded bodies, judge their commands, report the step.
func _iteration(delta):
	tick += 1
	sim_time += delta
	for id in bodies:
		if not active.has(id) and queues.has(id) and queues[id].size() > 0:
			active[id] = queues[id].pop_front()
		if not active.has(id):
			if bodies[id].mode == RigidBody2D.MODE_RIGID:
				bodies[id].linear_velocity = Vector2.ZERO
			continue
		var cmd = active[id]
		cmd["ticks"] += 1
		if cmd["kind"] != "move" or cmd["to"].size() < 2:
			active.erase(id)
			finish_command(cmd, "failed", "this engine does only move")
			continue
		var target = Vector2(cmd["to"][0], cmd["to"][1])
		var d = target - bodies[id].position
		if d.length() < 0.1:
			bodies[id].linear_velocity = Vector2.ZERO
			active.erase(id)
			finish_command(cmd, "done", "")
			continue
		if d.length() < cmd["best"] - 0.01:
			cmd["best"] = d.length()
			cmd["stalled"] = 0
		else:
			cmd["stalled"] += 1
		if cmd["touched"] and cmd["stalled"] > 30:
			bodies[id].linear_velocity = Vector2.ZERO
			active.erase(id)
			finish_command(cmd, "blocked", "contact: no progress for 30 steps")
			continue
		if cmd["ticks"] > 60 * 20:
			active.erase(id)
			finish_command(cmd, "failed", "not there after 20 s")
			continue
		bodies[id].linear_velocity = d.normalized() * min(speed, d.length() * 60)
	if not (connected and running):
		contacts.clear()
		return
	var moved = []
	for id in bodies:
		var p = [bodies[id].position.x, bodies[id].position.y]
		if not last_sent.has(id) or abs(p[0] - last_sent[id][0]) > 0.001 or abs(p[1] - last_sent[id][1]) > 0.001:
			moved.append({"id": id, "pos": p})
			last_sent[id] = p
	send({"tick": {"tick": str(tick), "simTime": sim_time, "bodies": moved, "contacts": contacts}})
	contacts = []
