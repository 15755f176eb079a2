/*
 * hrdash — the station page: a tile per patient, fed by the bridge's station feed, entirely in the
 * browser (no request to the Dash server while streaming).
 *
 * Wired by the station page (hrdash/pages/station.py) as clientside callbacks in the namespace
 * window.dash_clientside.hrdash (hrdash.js adds the monitor's functions to the same object; the
 * assets may load in any order):
 *   station_connect(config)              page load → the socket's url (resolveWsUrl of hrdash.js)
 *   on_station_message(message, config)  a frame → the tiles, written straight to the DOM
 *   on_station_state(state, config)      socket opened/closed → reconnect with backoff, badge
 *   on_station_tick(n, config)           ages and states extrapolated since the frame arrived,
 *                                        watchdog on a silent socket, badge
 * on_station_tick is not a Dash callback: station_connect starts a timer in this file (one per
 * page, every config.tick_ms) that calls it, so the page's clock costs no Dash round trip; the
 * timer stops by itself when the station is no longer on screen (station_connect starts it again
 * when the page is shown). None of them returns anything Dash must render (always no_update); the
 * badge is set with set_props, the tiles are written directly (textContent, attributes), and only
 * the parts of a tile whose content changed are touched.
 * The sparklines are drawn apart from the tile text, never reading layout after a write: the
 * text and attributes are written at once (what the person sees first), the canvases in one
 * requestAnimationFrame after, only those whose line changed. Each canvas's size is kept from a
 * ResizeObserver (read when layout is clean; a canvas is redrawn when its size changes), and the
 * line's colour for each tile state is read once from the CSS (station.css keys it on
 * data-state only).
 *
 * The station feed (/ws?station=1) sends whole-station frames, each complete on its own (Dash may
 * hand the page only the last of several):
 *   {"type":"station","run":R,"now":<bridge ms>,"stale_after":S,"snapshot":true|absent,
 *    "patients":[{"id","name","upstream","detail","state","age","last":{"seq","time","bpm"}|null,
 *                 "recent":[{"seq","time","bpm"}...],"alarms":[ALARM...]}]}
 * `age` is measured on the bridge's clock when it sent the frame; here it grows with the browser's
 * monotonic clock (performance.now) from the frame's arrival, so a tile goes stale by itself when
 * frames stop, and never from the browser's wall clock against a service's timestamps.
 * `recent` holds the last SPARK_SECONDS of readings in a snapshot ("snapshot": true) and the last
 * few in live frames: merged by seq per run into each patient's sparkline (bounded).
 * Dash may hand the page only the last of several messages, so one snapshot followed closely by
 * a live frame would often be lost. The bridge therefore sends snapshots, in place of live
 * frames, until the page acknowledges one (at most a bounded number):
 *   browser → bridge: {"type":"snapshot_ok","run":R,"nonce":k}   on every snapshot frame seen
 * (R the snapshot's run; the nonce makes each ack a new value of the socket component's `send`
 * prop, which sends only on a change; the bridge ignores it). Whichever snapshot Dash hands
 * over fills the sparklines. Last resort: when a live frame comes on a socket before any
 * snapshot did (an old bridge, or every snapshot lost), the page opens a new socket after
 * SNAPSHOT_RETRY_MS, unless a snapshot arrives meanwhile, at most SNAPSHOT_RETRIES times in a
 * row; the tiles themselves never depend on it.
 *
 * The tiles (built by the page, the only elements with data-patient):
 *   <div class="hr-tile-slot">
 *     <a class="hr-tile" data-patient=ID data-state=… data-alarm=… data-time=…>
 *       .hr-tile-name .hr-tile-state · .hr-tile-bpm .hr-tile-unit · .hr-tile-age · canvas.hr-tile-spark
 *     <button class="hr-ack" data-alarm-id=ID hidden>   (beside the link, never inside it)
 * A tile's ack button is shown, with the id of the tile's highest active or latched alarm
 * (oldest first within a priority), while there is one; the alarms list has one on each active
 * or latched alarm. A click sends {"type":"ack","alarm":ID,"nonce":k} on the station's socket
 * (the nonce, as on snapshot acks, makes each message a new value of the socket's `send`; the
 * bridge ignores it) and never navigates; the same alarm is not sent again within
 * ACK_REPEAT_MS. An error frame answering an ack ({"type":"error","request":"ack",...}; older
 * bridges: a message starting "ack:") is shown in hr-station-message for MESSAGE_MS; one
 * answering an audio pause goes to the sound control (assets/alarm_sound.js).
 * Every station frame is handed to window.hrdashAudio.update (its `sounding`, missing = null,
 * `audio_paused_until` and `now`), and station_connect registers the socket as its sender.
 * data-time is the shown reading's `time` (Unix ms; empty without one), written with the bpm: it
 * names the reading the number belongs to (benchmarks/station.py times tiles by it).
 * Upstream strings (names, causes) are only ever written as text (textContent, title).
 */
(function () {
    "use strict";

    var SPARK_MAX_POINTS = 2000; // per patient, whatever the service's rate (memory bound)
    var SPARK_MIN_SPAN = 40; // bpm: the y range is at least this tall (a calm line looks calm)
    var SPARK_PAD = 3; // CSS px kept free above and below the line
    var SPARK_LINE = 1.6; // CSS px
    var SNAPSHOT_RETRY_MS = 1000; // no snapshot on a socket: a new socket after this (last resort)
    var SNAPSHOT_RETRIES = 3; // ... at most this many times in a row
    var DASH = "–"; // en dash: no reading
    var LABELS = {live: "Live", stale: "Stale", connecting: "Connecting…", down: "Down"};
    var UPSTREAMS = {connecting: true, live: true, down: true};
    var PRIORITIES = ["high", "medium", "low"]; // highest first
    var ALARM_ON = {active: true, latched: true}; // alarm states that colour a tile (and ack)
    var ACK_REPEAT_MS = 2000; // a second click on the same alarm's ack within this: not sent
    var MESSAGE_MS = 6000; // a refused acknowledgement stays shown this long
    var FLASH_PREFIX = "hr-flash"; // station.css's flashing keyframes (tiles' rings, list items)
    var FLASH_EPOCH = 0; // ms on the document's timeline: every flashing animation starts here

    // Per-tab mutable state. Times are performance.now() milliseconds.
    var S = {
        nonce: 0,
        backoff: null, // next reconnect delay (null: the shortest)
        timer: null, // pending reconnect
        readyState: undefined,
        openedAt: 0,
        connectStartedAt: 0,
        lastMessageAt: 0, // any message, valid or not (the watchdog's)
        framesSinceOpen: 0,
        snapshotSeen: false, // a snapshot has arrived on this socket
        snapshotMisses: 0, // sockets in a row that sent a live frame before any snapshot
        snapshotTimer: null,
        acks: 0, // snapshot acks sent (each one's nonce)
        closedUnopened: 0, // sockets closed since one last opened (a refused handshake closes)
        wsBase: null,
        frame: null, // the last valid station frame
        frameAt: 0, // its arrival
        sparks: {}, // patient id → {run, points (by seq), last (largest seq), version}
        frames: 0, // valid station frames received
        rejected: 0, // malformed frames, ignored
        reasons: {}, // reason → count
        ignored: 0, // well-formed frames of other types
        badge: null, // "text|class|title" last set
        relay: null, // the last station frame's {state, detail} (an edge of the Redis fan-out)
        tileWrites: 0, // tiles touched (tests check that unchanged tiles are not)
        sizeEpoch: 0, // bumped on resize: every sparkline is redrawn at its new size
        config: null, // the config the timer ticks with (station_connect's)
        ticker: null, // the page's timer (setInterval) calling on_station_tick
        ticks: 0, // its calls of on_station_tick
        tiles: null, // patient id → tile element, while they stay in the document
        raf: null, // the pending requestAnimationFrame that draws sparklines
        draws: 0, // sparklines drawn
        colors: {}, // tile state → the sparkline's colour (CSS), read once per state
        sends: 0, // messages sent on the socket (each one's nonce, with the snapshot acks)
        ackSent: {}, // alarm id → when its ack was sent (performance.now)
        message: null, // the timer hiding hr-station-message
        errors: 0, // error frames received
        flashRaf: null, // the pending requestAnimationFrame that puts the flashing in phase
        flashSynced: 0, // flashing animations put in phase (FLASH_EPOCH)
    };

    // A previous copy of this file on the page (evaluated again) hands over: one timer per page.
    if (window.hrdashStation && window.hrdashStation.state) {
        var previous = window.hrdashStation.state;
        if (previous.ticker !== null && previous.ticker !== undefined) {
            clearInterval(previous.ticker);
            previous.ticker = null;
        }
        if (typeof window.hrdashStation.dispose === "function") {
            window.hrdashStation.dispose();
        }
    }

    // Tile element → {view, parts} last written to it. A tile React mounts afresh (the page shown
    // again) has no entry, so it is written in full.
    var shown = new WeakMap();
    // Canvas → {w, h} (CSS px, as clientWidth/clientHeight), kept by the ResizeObserver.
    var sizes = new WeakMap();
    // Canvas → the sparkline to draw on it: {spark, right, state}, pending (drawn in the next
    // animation frame) or last drawn (drawn again when the canvas changes size).
    var lines = new WeakMap();
    var pending = new Set(); // canvases waiting for the next animation frame
    var resized = typeof ResizeObserver === "function" ? new ResizeObserver(onResize) : null;

    function now() {
        return performance.now();
    }

    function finite(x) {
        return typeof x === "number" && isFinite(x);
    }

    function nu() {
        return window.dash_clientside.no_update;
    }

    /** The monitor's socket timings (assets/hrdash.js), read when needed: load order is free. */
    function timing() {
        return window.hrdashCore.timing;
    }

    // -- pure helpers ------------------------------------------------------------------------

    function readingProblem(r) {
        if (!r || typeof r !== "object" || !finite(r.seq) || !finite(r.time) || !finite(r.bpm)) {
            return "reading";
        }
        return "";
    }

    function patientProblem(p) {
        if (!p || typeof p !== "object" || Array.isArray(p)) {
            return "patient";
        }
        if (typeof p.id !== "string" || !p.id) {
            return "patient_id";
        }
        if (!Object.prototype.hasOwnProperty.call(LABELS, p.state)) {
            return "state";
        }
        if (!Object.prototype.hasOwnProperty.call(UPSTREAMS, p.upstream)) {
            return "upstream";
        }
        if (p.age !== null && !(finite(p.age) && p.age >= 0)) {
            return "age";
        }
        if (p.name !== undefined && typeof p.name !== "string") {
            return "name";
        }
        if (p.detail !== undefined && p.detail !== null && typeof p.detail !== "string") {
            return "detail";
        }
        if (p.last !== null && readingProblem(p.last)) {
            return "last";
        }
        if (!Array.isArray(p.recent) || p.recent.some(readingProblem)) {
            return "recent";
        }
        if (p.alarms !== undefined && !Array.isArray(p.alarms)) {
            return "alarms";
        }
        return "";
    }

    /**
     * A socket message's text → {frame} (a valid station frame), {ignored: type} (a well-formed
     * frame of another type) or {error: reason} (malformed: not shown, counted).
     */
    function parseFrame(text) {
        var frame;
        try {
            frame = JSON.parse(text);
        } catch (e) {
            return {error: "json"};
        }
        if (!frame || typeof frame !== "object" || Array.isArray(frame)) {
            return {error: "not_object"};
        }
        if (frame.type !== "station") {
            return typeof frame.type === "string" ? {ignored: frame.type} : {error: "type"};
        }
        if (!(typeof frame.run === "string" || finite(frame.run))) {
            return {error: "run"};
        }
        if (!Array.isArray(frame.patients)) {
            return {error: "patients"};
        }
        for (var i = 0; i < frame.patients.length; i++) {
            var why = patientProblem(frame.patients[i]);
            if (why) {
                return {error: why};
            }
        }
        return {frame: frame};
    }

    /**
     * A patient's state and age (s) `elapsed` seconds after the frame that described it: a live
     * patient whose age has grown past `staleAfter` is stale. Down and connecting stay as they
     * were (only the bridge knows when they change).
     */
    function tileState(patient, elapsed, staleAfter) {
        var age = patient.age === null || patient.age === undefined ? null : patient.age + elapsed;
        var state = patient.state;
        if (state === "live" && age !== null && age > staleAfter) {
            state = "stale";
        }
        return {state: state, age: age};
    }

    /** Seconds → "12 s ago", "4 min ago", "2 h ago"; "" for null. */
    function ageText(age) {
        if (age === null || age === undefined || !finite(age)) {
            return "";
        }
        var s = Math.max(0, Math.floor(age));
        if (s < 60) {
            return s + " s ago";
        }
        if (s < 3600) {
            return Math.floor(s / 60) + " min ago";
        }
        return Math.floor(s / 3600) + " h ago";
    }

    /** The highest priority among a patient's active (or latched) alarms, or "none". */
    function highestAlarm(alarms) {
        if (!Array.isArray(alarms)) {
            return "none";
        }
        var best = PRIORITIES.length;
        alarms.forEach(function (a) {
            if (a && ALARM_ON[a.state] === true) {
                var i = PRIORITIES.indexOf(a.priority);
                if (i !== -1 && i < best) {
                    best = i;
                }
            }
        });
        return best < PRIORITIES.length ? PRIORITIES[best] : "none";
    }

    var LISTED = {active: true, latched: true, acknowledged: true}; // states in the alarms list
    /**
     * One alarm as text: "*** Bed 1 · HR high 141 (> 120)", " · latched" when not active. The
     * markers and the kinds' labels are Python's (hrdash.alarms), in the page config.
     */
    function alarmText(p, a) {
        var config = S.config || {};
        var markers = config.markers || {};
        var kinds = config.kind_labels || {};
        var what = kinds[a.kind] || String(a.kind);
        if (typeof a.value === "number" && typeof a.limit === "number") {
            var sign = a.kind === "hr_low" || a.kind === "hr_extreme_low" ? "<" : ">";
            what += " " + Math.round(a.value) + " (" + sign + " " + a.limit + ")";
        }
        if (a.state !== "active") {
            what += " · " + a.state;
        }
        return (markers[a.priority] || "") + " " + String(p.name || p.id) + " · " + what;
    }

    /**
     * The alarm a tile's ack button acknowledges: the patient's highest-priority active or
     * latched alarm, the oldest within that priority; {id, label} or null.
     */
    function tileAck(patient) {
        var best = null;
        ((patient && patient.alarms) || []).forEach(function (a) {
            var rank = a && ALARM_ON[a.state] === true ? PRIORITIES.indexOf(a.priority) : -1;
            if (rank === -1 || a.id === undefined || a.id === null) {
                return;
            }
            var since = finite(a.since) ? a.since : 0;
            if (!best || rank < best.rank || (rank === best.rank && since < best.since)) {
                best = {rank: rank, since: since, alarm: a};
            }
        });
        if (!best) {
            return null;
        }
        return {id: String(best.alarm.id), label: "Acknowledge " + alarmText(patient, best.alarm)};
    }

    /** An ack button for alarm `id` (text only; its label names the alarm). */
    function ackButton(config, id, label) {
        var b = document.createElement("button");
        b.type = "button";
        b.className = config.ack_class;
        b.setAttribute("data-alarm-id", id);
        b.setAttribute("aria-label", label);
        b.title = label;
        b.textContent = config.ack_text || "Ack";
        return b;
    }

    /**
     * The station's alarms list from a frame: every active, latched or acknowledged alarm of
     * the patients on the page, highest priority first, oldest first within one; each as
     * {id, patient, name, priority, state, since, text} with text "*** Bed 1 · HR high 141
     * (> 120)" (upstream strings stay text).
     */
    function alarmList(frame, onPage) {
        var out = [];
        ((frame && frame.patients) || []).forEach(function (p) {
            if (!p || (onPage && !onPage[p.id]) || !Array.isArray(p.alarms)) {
                return;
            }
            p.alarms.forEach(function (a) {
                var rank = a ? PRIORITIES.indexOf(a.priority) : -1;
                if (rank === -1 || LISTED[a.state] !== true) {
                    return;
                }
                out.push({
                    id: String(a.id),
                    patient: String(p.id),
                    name: String(p.name || p.id),
                    priority: a.priority,
                    state: a.state,
                    since: typeof a.since === "number" ? a.since : 0,
                    rank: rank,
                    ack: ALARM_ON[a.state] === true,
                    text: alarmText(p, a),
                });
            });
        });
        out.sort(function (x, y) {
            return x.rank - y.rank || x.since - y.since || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0);
        });
        return out;
    }

    /** Write the alarms list (hr-station-alarms) when what it shows has changed. */
    function renderAlarms(config, frame, onPage) {
        var list = document.getElementById(config.ids.alarms);
        if (!list) {
            return;
        }
        var items = alarmList(frame, onPage);
        var key = items.map(function (a) {
            return a.id + "|" + a.state + "|" + a.text;
        }).join("\n");
        if (S.alarmsKey === key) {
            return;
        }
        S.alarmsKey = key;
        var tiles = tilesById();
        var nodes = items.map(function (a) {
            var li = document.createElement("li");
            li.className = "hr-station-alarm hr-station-alarm--" + a.priority;
            li.setAttribute("data-alarm-id", a.id);
            li.setAttribute("data-priority", a.priority);
            li.setAttribute("data-state", a.state);
            var link = document.createElement("a");
            var tile = tiles[a.patient];
            link.setAttribute("href", tile ? tile.getAttribute("href") || "#" : "#");
            link.textContent = a.text;
            li.appendChild(link);
            if (a.ack && config.ack_class) {
                li.appendChild(ackButton(config, a.id, "Acknowledge " + a.text));
            }
            return li;
        });
        if (!nodes.length) {
            var empty = document.createElement("li");
            empty.className = "hr-station-alarms__empty";
            empty.textContent = config.no_alarms || "No active alarms";
            nodes.push(empty);
        }
        list.replaceChildren.apply(list, nodes);
        flashChanged();
    }

    /**
     * Flashing in unison: every flashing animation (station.css's hr-flash-*, on the tiles' rings
     * and the list's items) starts at the same moment, FLASH_EPOCH on the document's timeline,
     * so a wall of alarms flashes together and a list item written afresh keeps the phase. Done
     * in the next animation frame after a tile's alarm or the list changed.
     */
    function flashChanged() {
        if (S.flashRaf === null && typeof document.getAnimations === "function") {
            S.flashRaf = requestAnimationFrame(syncFlashing);
        }
    }

    function syncFlashing() {
        S.flashRaf = null;
        document.getAnimations().forEach(function (a) {
            if (typeof a.animationName === "string" && a.animationName.indexOf(FLASH_PREFIX) === 0 &&
                    a.startTime !== FLASH_EPOCH) {
                a.startTime = FLASH_EPOCH;
                S.flashSynced += 1;
            }
        });
    }

    /** The big number: the latest bpm, rounded to a whole beat, or an en dash. */
    function bpmText(last) {
        return last && finite(last.bpm) ? String(Math.round(last.bpm)) : DASH;
    }

    function stateLabel(state) {
        return LABELS[state] || state;
    }

    /**
     * Everything a tile shows, from one patient of a frame `elapsed` s after it arrived:
     * {name, state, label, title, bpm, time, age, alarm}. The age is shown only when the tile is not
     * live (a live tile's number is current by definition).
     */
    function tileView(patient, elapsed, staleAfter) {
        var st = tileState(patient, elapsed, staleAfter);
        var detail = typeof patient.detail === "string" ? patient.detail : "";
        return {
            name: typeof patient.name === "string" ? patient.name : null,
            state: st.state,
            label: stateLabel(st.state),
            title: detail,
            bpm: bpmText(patient.last),
            time: patient.last && finite(patient.last.time) ? String(patient.last.time) : "",
            age: st.state === "live" ? "" : ageText(st.age),
            ageSeconds: st.age,
            alarm: highestAlarm(patient.alarms),
            ack: tileAck(patient),
        };
    }

    function indexOfSeq(points, seq) {
        var lo = 0;
        var hi = points.length - 1;
        while (lo <= hi) {
            var mid = (lo + hi) >> 1;
            if (points[mid].seq === seq) {
                return mid;
            }
            if (points[mid].seq < seq) {
                lo = mid + 1;
            } else {
                hi = mid - 1;
            }
        }
        return -1;
    }

    /**
     * Merge readings (a frame's `recent`) into a patient's sparkline `spark` (or null) of bridge
     * run `run`: a new object, or `spark` itself when nothing changed. Points are kept by seq
     * (no duplicates), only those of the last `sparkMs` before the newest reading's time, and at
     * most SPARK_MAX_POINTS. Another run starts afresh (its seqs are not comparable).
     */
    function mergeSpark(spark, run, readings, sparkMs) {
        run = String(run);
        var same = spark && spark.run === run;
        var points = same ? spark.points : [];
        var fresh = (readings || []).filter(function (r) {
            return !readingProblem(r) && indexOfSeq(points, r.seq) === -1;
        });
        if (same && !fresh.length) {
            return spark;
        }
        var seen = {};
        var merged = points.slice();
        fresh.forEach(function (r) {
            if (!seen[r.seq]) {
                seen[r.seq] = true;
                merged.push({seq: r.seq, time: r.time, bpm: r.bpm});
            }
        });
        merged.sort(function (a, b) {
            return a.seq - b.seq;
        });
        if (merged.length) {
            var from = merged[merged.length - 1].time - sparkMs;
            merged = merged.filter(function (p) {
                return p.time >= from;
            });
        }
        if (merged.length > SPARK_MAX_POINTS) {
            merged = merged.slice(merged.length - SPARK_MAX_POINTS);
        }
        return {
            run: run,
            points: merged,
            last: merged.length ? merged[merged.length - 1].seq : null,
            version: (spark ? spark.version : 0) + 1,
        };
    }

    /**
     * The sparkline's polyline in CSS px of a `width` × `height` canvas: {segments: [[[x, y],
     * ...], ...], lo, hi}. x: the last `sparkMs` up to `right` (a reading time) at the right
     * edge; y: the points' bpm range, at least SPARK_MIN_SPAN tall. The line breaks where two
     * readings are more than `gapMs` apart (a gap in the data shows as a gap).
     */
    function sparkPoints(points, right, sparkMs, width, height, gapMs) {
        var from = right - sparkMs;
        var visible = (points || []).filter(function (p) {
            return p.time >= from && p.time <= right;
        });
        if (!visible.length || width <= 0 || height <= 0) {
            return {segments: [], lo: null, hi: null};
        }
        var lo = Infinity;
        var hi = -Infinity;
        visible.forEach(function (p) {
            lo = Math.min(lo, p.bpm);
            hi = Math.max(hi, p.bpm);
        });
        if (hi - lo < SPARK_MIN_SPAN) {
            var mid = (hi + lo) / 2;
            lo = mid - SPARK_MIN_SPAN / 2;
            hi = mid + SPARK_MIN_SPAN / 2;
        }
        var pad = Math.min(SPARK_PAD, height / 4);
        var segments = [];
        var seg = null;
        var prev = null;
        visible.forEach(function (p) {
            var x = width * (1 - (right - p.time) / sparkMs);
            var y = pad + ((hi - p.bpm) / (hi - lo)) * (height - 2 * pad);
            if (!seg || p.time - prev.time > gapMs) {
                seg = [];
                segments.push(seg);
            }
            seg.push([Math.round(x * 10) / 10, Math.round(y * 10) / 10]);
            prev = p;
        });
        return {segments: segments, lo: lo, hi: hi};
    }

    /**
     * The page's connection badge (pure): {text, cls, title}.
     *   sock: {readyState, everOpen, framesSinceOpen, refused (originRefusal's message or ""),
     *          relay: the last station frame's {state, detail} ("down" from an edge of the Redis
     *          fan-out that cannot reach Redis: the socket is fine, what feeds it is not)}
     */
    function badgeState(sock) {
        if (sock.refused) {
            return {text: "Origin refused", cls: "hr-badge--down", title: sock.refused};
        }
        if (sock.readyState !== WebSocket.OPEN) {
            return sock.everOpen || sock.readyState === WebSocket.CLOSED
                ? {text: "Reconnecting…", cls: "hr-badge--reconnecting", title: ""}
                : {text: "Connecting…", cls: "hr-badge--connecting", title: ""};
        }
        if (!sock.framesSinceOpen) {
            return {text: "Connecting…", cls: "hr-badge--connecting", title: ""};
        }
        if (sock.relay && sock.relay.state === "down") {
            return {text: "Relay down", cls: "hr-badge--down", title: sock.relay.detail || ""};
        }
        return {text: "Live", cls: "hr-badge--live", title: ""};
    }

    // -- the DOM ------------------------------------------------------------------------------

    /** The tiles on the page, by patient id (the only elements with data-patient): looked up
     * again only when one of those found last has left the document (React mounted the page
     * afresh) or none were found. */
    function tilesById() {
        var out = S.tiles;
        var ok = out !== null;
        if (ok) {
            var any = false;
            for (var id in out) {
                any = true;
                if (!out[id].isConnected) {
                    ok = false;
                    break;
                }
            }
            ok = ok && any;
        }
        if (ok) {
            return out;
        }
        out = {};
        var nodes = document.querySelectorAll("[data-patient]");
        for (var i = 0; i < nodes.length; i++) {
            out[nodes[i].getAttribute("data-patient")] = nodes[i];
        }
        S.tiles = out;
        return out;
    }

    function partsOf(el, config) {
        var slot = el.parentElement;
        var parts = {
            ack: slot && config.ack_class ? slot.querySelector(":scope > ." + config.ack_class)
                : null,
            name: el.querySelector(".hr-tile-name"),
            state: el.querySelector(".hr-tile-state"),
            bpm: el.querySelector(".hr-tile-bpm"),
            age: el.querySelector(".hr-tile-age"),
            spark: el.querySelector(".hr-tile-spark"),
        };
        if (parts.spark && resized) {
            resized.observe(parts.spark); // its first size comes with the next layout
        }
        return parts;
    }

    function setText(node, text) {
        if (node && node.textContent !== text) {
            node.textContent = text;
        }
    }

    /** Write what differs between `view` and `old` (null: everything) to the tile `el`. */
    function writeTile(el, parts, view, old) {
        S.tileWrites += 1;
        if (!old || old.state !== view.state) {
            el.setAttribute("data-state", view.state);
        }
        if (!old || old.alarm !== view.alarm) {
            el.setAttribute("data-alarm", view.alarm);
            flashChanged();
        }
        if (view.name !== null && (!old || old.name !== view.name)) {
            setText(parts.name, view.name);
        }
        if (!old || old.label !== view.label) {
            setText(parts.state, view.label);
        }
        if (parts.state && (!old || old.title !== view.title)) {
            if (view.title) {
                parts.state.setAttribute("title", view.title);
            } else {
                parts.state.removeAttribute("title");
            }
        }
        if (!old || old.bpm !== view.bpm) {
            setText(parts.bpm, view.bpm);
        }
        if (!old || old.time !== view.time) {
            // The shown reading's time (Unix ms): names the reading the bpm belongs to.
            el.setAttribute("data-time", view.time);
        }
        if (!old || old.age !== view.age) {
            setText(parts.age, view.age);
        }
        if (parts.ack && (!old || ackKey(old.ack) !== ackKey(view.ack))) {
            var b = parts.ack;
            if (view.ack) {
                b.setAttribute("data-alarm-id", view.ack.id);
                b.setAttribute("aria-label", view.ack.label);
                b.title = view.ack.label;
                b.hidden = false;
            } else {
                b.hidden = true;
                b.removeAttribute("data-alarm-id");
                b.removeAttribute("aria-label");
                b.removeAttribute("title");
            }
        }
    }

    function ackKey(ack) {
        return ack ? ack.id + "|" + ack.label : "";
    }

    function drawSpark(canvas, line, color, w, h, dpr) {
        var pw = Math.round(w * dpr);
        var ph = Math.round(h * dpr);
        if (canvas.width !== pw) {
            canvas.width = pw;
        }
        if (canvas.height !== ph) {
            canvas.height = ph;
        }
        var ctx = canvas.getContext("2d");
        if (!ctx) {
            return;
        }
        ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
        ctx.clearRect(0, 0, w, h);
        ctx.strokeStyle = color;
        ctx.fillStyle = color;
        ctx.lineWidth = SPARK_LINE;
        ctx.lineJoin = "round";
        ctx.lineCap = "round";
        line.segments.forEach(function (seg) {
            if (seg.length === 1) {
                ctx.beginPath();
                ctx.arc(seg[0][0], seg[0][1], SPARK_LINE, 0, 2 * Math.PI);
                ctx.fill();
                return;
            }
            ctx.beginPath();
            seg.forEach(function (pt, i) {
                if (i === 0) {
                    ctx.moveTo(pt[0], pt[1]);
                } else {
                    ctx.lineTo(pt[0], pt[1]);
                }
            });
            ctx.stroke();
        });
    }

    /**
     * Bring every tile up to date with the last frame, `t` (performance.now) being now: the
     * views are compared with what each tile shows and only differences are written, at once;
     * the sparklines that changed are queued for the next animation frame (queueLine).
     */
    function render(config, t) {
        var frame = S.frame;
        if (!frame) {
            return;
        }
        var elapsed = Math.max(0, (t - S.frameAt) / 1000);
        var staleAfter = config.stale_after;
        var sparkMs = config.spark_seconds * 1000;
        var tiles = tilesById();
        frame.patients.forEach(function (p) {
            var el = tiles[p.id];
            if (!el) {
                return;
            }
            var view = tileView(p, elapsed, staleAfter);
            var spark = S.sparks[p.id] || null;
            // A tile that is not live scrolls its line left by whole seconds of its age.
            view.shift = view.ageSeconds === null ? 0 : Math.floor(view.ageSeconds);
            view.spark = (spark ? spark.run + ":" + spark.version : "") + "@" + S.sizeEpoch;
            var entry = shown.get(el);
            var old = entry ? entry.view : null;
            if (old && old.state === view.state && old.alarm === view.alarm &&
                old.name === view.name && old.label === view.label && old.title === view.title &&
                old.bpm === view.bpm && old.time === view.time && old.age === view.age &&
                old.shift === view.shift && old.spark === view.spark &&
                ackKey(old.ack) === ackKey(view.ack)) {
                return;
            }
            if (!entry) {
                entry = {view: null, parts: partsOf(el, config)};
                shown.set(el, entry);
            }
            writeTile(el, entry.parts, view, old);
            entry.view = view;
            if (entry.parts.spark && (!old || old.spark !== view.spark || old.shift !== view.shift ||
                    old.state !== view.state)) {
                var right = p.last ? p.last.time : (spark && spark.points.length
                    ? spark.points[spark.points.length - 1].time : 0);
                queueLine(entry.parts.spark, {
                    spark: spark, right: right + view.shift * 1000, state: view.state,
                    sparkMs: sparkMs, gapMs: staleAfter * 1000,
                });
            }
        });
    }

    /** Draw `line` on `canvas` in the next animation frame (the latest line wins). */
    function queueLine(canvas, line) {
        lines.set(canvas, line);
        pending.add(canvas);
        if (S.raf === null) {
            S.raf = requestAnimationFrame(drawPending);
        }
    }

    /** The sparkline's colour of a tile in `state`, read from the CSS once per state. */
    function lineColor(canvas, state) {
        var color = S.colors[state];
        if (color === undefined) {
            color = window.getComputedStyle(canvas).color;
            S.colors[state] = color;
        }
        return color;
    }

    /** Draw `canvas`'s line at its known size (none yet: the ResizeObserver will draw it). */
    function drawLine(canvas) {
        var line = lines.get(canvas);
        var size = sizes.get(canvas);
        if (!size && !resized) {
            size = {w: canvas.clientWidth, h: canvas.clientHeight}; // no ResizeObserver
        }
        if (!line || !size || !canvas.isConnected) {
            return;
        }
        var pts = sparkPoints(line.spark ? line.spark.points : [], line.right, line.sparkMs,
            size.w, size.h, line.gapMs);
        S.draws += 1;
        drawSpark(canvas, pts, lineColor(canvas, line.state), size.w, size.h,
            window.devicePixelRatio || 1);
    }

    function drawPending() {
        S.raf = null;
        var todo = Array.from(pending);
        pending.clear();
        todo.forEach(drawLine);
    }

    /** New sizes (read here, where layout is clean): kept, and those canvases drawn again. */
    function onResize(entries) {
        entries.forEach(function (e) {
            var canvas = e.target;
            var w = canvas.clientWidth;
            var h = canvas.clientHeight;
            var old = sizes.get(canvas);
            if (old && old.w === w && old.h === h) {
                return;
            }
            sizes.set(canvas, {w: w, h: h});
            if (!pending.has(canvas)) {
                drawLine(canvas);
            }
        });
    }

    // -- the socket ---------------------------------------------------------------------------

    function setBadge(config, t) {
        var core = window.hrdashCore;
        var sock = {
            readyState: S.readyState,
            everOpen: S.nonce > 0 || S.openedAt > 0,
            framesSinceOpen: S.framesSinceOpen,
            relay: S.relay,
            refused: S.readyState !== WebSocket.OPEN && S.closedUnopened > 0
                ? core.originRefusal(window.location.origin, config.allowed_origins) : "",
        };
        var b = badgeState(sock);
        var key = b.text + "|" + b.cls + "|" + b.title;
        if (S.badge === key || !config.ids || !config.ids.status) {
            return;
        }
        S.badge = key;
        window.dash_clientside.set_props(config.ids.status, {
            children: b.text, className: "hr-badge " + b.cls, title: b.title,
        });
    }

    function wsBase(config) {
        if (S.wsBase === null) {
            S.wsBase = window.hrdashCore.resolveWsUrl(config.ws_url, config.ws_port, window.location);
        }
        return S.wsBase;
    }

    /** Is the station on screen? (Dash pages unmount it when another page is shown.) */
    function mounted() {
        return document.querySelector("[data-patient]") !== null;
    }

    function reconnect(config) {
        clearTimers();
        if (!mounted()) {
            return;
        }
        var base = wsBase(config);
        S.nonce += 1;
        S.connectStartedAt = now();
        S.openedAt = 0;
        S.readyState = WebSocket.CONNECTING;
        S.framesSinceOpen = 0;
        S.snapshotSeen = false;
        window.dash_clientside.set_props(config.ids.ws, {
            url: base + (base.indexOf("?") === -1 ? "?" : "&") + "n=" + S.nonce,
        });
    }

    function scheduleReconnect(config) {
        if (S.timer !== null) {
            return;
        }
        var tm = timing();
        var delay = S.backoff === null ? tm.backoffMinMs : S.backoff;
        S.backoff = Math.min(delay * 2, tm.backoffMaxMs);
        S.timer = setTimeout(function () {
            S.timer = null;
            reconnect(config);
        }, delay);
    }

    /** A snapshot frame: acknowledge it over the socket (the bridge then sends live frames),
     * and call off a new socket asked for by snapshotLost. */
    function snapshotArrived(config, frame) {
        S.snapshotSeen = true;
        S.snapshotMisses = 0;
        if (S.snapshotTimer !== null) {
            clearTimeout(S.snapshotTimer);
            S.snapshotTimer = null;
        }
        // Not on a closed socket: the component would open a new one to send it.
        if (S.readyState !== WebSocket.CLOSED && config.ids && config.ids.ws) {
            S.acks += 1;
            S.sends += 1;
            window.dash_clientside.set_props(config.ids.ws, {
                send: JSON.stringify({type: "snapshot_ok", run: frame.run, nonce: S.sends}),
            });
        }
    }

    /** Send `message` (an object) on the open socket, with a fresh nonce; false if not open. */
    function sendMessage(config, message) {
        if (S.readyState !== WebSocket.OPEN || !config || !config.ids || !config.ids.ws) {
            return false;
        }
        S.sends += 1;
        var out = {};
        for (var k in message) {
            if (Object.prototype.hasOwnProperty.call(message, k)) {
                out[k] = message[k];
            }
        }
        out.nonce = S.sends;
        window.dash_clientside.set_props(config.ids.ws, {send: JSON.stringify(out)});
        return true;
    }

    /** Show `text` in hr-station-message for MESSAGE_MS (text only). */
    function showMessage(config, text) {
        var box = config && config.ids ? document.getElementById(config.ids.message) : null;
        if (!box) {
            return;
        }
        box.textContent = String(text);
        box.hidden = false;
        if (S.message !== null) {
            clearTimeout(S.message);
        }
        S.message = setTimeout(function () {
            S.message = null;
            box.hidden = true;
            box.textContent = "";
        }, MESSAGE_MS);
    }

    /** An error frame: which request it answers (its `request`, else its message's prefix). */
    function errorRequest(frame) {
        if (typeof frame.request === "string") {
            return frame.request;
        }
        var m = typeof frame.message === "string" ? /^([a-z_]+):/.exec(frame.message) : null;
        return m ? m[1] : "";
    }

    function onError(config, frame) {
        S.errors += 1;
        var text = typeof frame.message === "string" ? frame.message : "refused";
        var request = errorRequest(frame);
        if (request === "ack") {
            showMessage(config, "Acknowledge refused: " + text);
        } else if (request === "audio_pause" && window.hrdashAudio) {
            window.hrdashAudio.error("Audio pause refused: " + text);
        }
    }

    /** A click on an ack button (the tiles' or the list's): the ack, never a navigation. */
    function onAckClick(event) {
        var config = S.config;
        var target = event.target;
        if (!config || !config.ack_class || !target || typeof target.closest !== "function") {
            return;
        }
        var button = target.closest("button." + config.ack_class);
        var id = button ? button.getAttribute("data-alarm-id") : null;
        if (!button || !id || !onStation(config, button)) {
            return; // not one of the station's (the monitor's panel has its own)
        }
        event.preventDefault();
        event.stopPropagation();
        var t = now();
        if (S.ackSent[id] !== undefined && t - S.ackSent[id] < ACK_REPEAT_MS) {
            return;
        }
        if (sendMessage(config, {type: "ack", alarm: id})) {
            S.ackSent[id] = t;
        } else {
            showMessage(config, "Not connected: the acknowledgement was not sent");
        }
    }

    /** Is `el` in the station's grid or alarms list? */
    function onStation(config, el) {
        return [config.ids.grid, config.ids.alarms].some(function (id) {
            var box = id ? document.getElementById(id) : null;
            return box !== null && box.contains(el);
        });
    }

    document.addEventListener("click", onAckClick);

    /** The sound control (assets/alarm_sound.js), if it is on the page. */
    function audio() {
        var a = window.hrdashAudio;
        return a && typeof a.update === "function" ? a : null;
    }

    /** A live frame came on this socket before any snapshot (an old bridge, or every snapshot
     * lost): the last resort is a new socket, once the page has settled, unless a snapshot
     * arrives meanwhile, a bounded number of times in a row. */
    function snapshotLost(config) {
        if (S.snapshotTimer !== null) {
            return;
        }
        S.snapshotMisses += 1;
        if (S.snapshotMisses > SNAPSHOT_RETRIES) {
            return;
        }
        S.snapshotTimer = setTimeout(function () {
            S.snapshotTimer = null;
            if (S.readyState === WebSocket.OPEN && !S.snapshotSeen) {
                reconnect(config);
            }
        }, SNAPSHOT_RETRY_MS);
    }

    function clearTimers() {
        [S.timer, S.snapshotTimer].forEach(function (t) {
            if (t !== null) {
                clearTimeout(t);
            }
        });
        S.timer = null;
        S.snapshotTimer = null;
    }

    // -- the clientside callbacks ---------------------------------------------------------------

    function stopTicker() {
        if (S.ticker !== null) {
            clearInterval(S.ticker);
            S.ticker = null;
        }
    }

    /** The page's clock: on_station_tick every config.tick_ms with the latest config, on one
     * timer (started again, never twice); it stops when the station leaves the screen. */
    function startTicker(config) {
        stopTicker();
        S.config = config;
        if (!(finite(config.tick_ms) && config.tick_ms > 0)) {
            return;
        }
        S.ticker = setInterval(function () {
            if (!mounted()) {
                stopTicker();
                return;
            }
            on_station_tick(S.ticks + 1, S.config);
        }, config.tick_ms);
    }

    /** The socket's first url, as soon as the page has its config; starts the page's clock. */
    function station_connect(config) {
        if (!config) {
            return nu();
        }
        clearTimers();
        startTicker(config);
        var sound = audio();
        if (sound) {
            sound.setSender(function (message) {
                return sendMessage(S.config, message);
            });
        }
        S.wsBase = null;
        S.snapshotSeen = false;
        S.snapshotMisses = 0;
        S.readyState = WebSocket.CONNECTING;
        S.openedAt = 0;
        S.framesSinceOpen = 0;
        S.badge = null;
        S.connectStartedAt = now();
        return wsBase(config);
    }

    function on_station_message(message, config) {
        if (!message || typeof message.data !== "string" || !config) {
            return nu();
        }
        var t = now();
        S.lastMessageAt = t;
        var parsed = parseFrame(message.data);
        if (parsed.error) {
            S.rejected += 1;
            S.reasons[parsed.error] = (S.reasons[parsed.error] || 0) + 1;
            return nu();
        }
        S.config = config;
        if (parsed.ignored) {
            S.ignored += 1;
            if (parsed.ignored === "error") {
                onError(config, JSON.parse(message.data));
            }
            return nu();
        }
        var frame = parsed.frame;
        S.frames += 1;
        S.framesSinceOpen += 1;
        S.backoff = null;
        if (frame.snapshot === true) {
            snapshotArrived(config, frame);
        } else if (!S.snapshotSeen) {
            snapshotLost(config);
        }
        var onPage = {};
        (config.patients || []).forEach(function (p) {
            onPage[p.id] = true;
        });
        var sparkMs = config.spark_seconds * 1000;
        frame.patients.forEach(function (p) {
            if (onPage[p.id]) {
                S.sparks[p.id] = mergeSpark(S.sparks[p.id] || null, frame.run, p.recent, sparkMs);
            }
        });
        S.frame = frame;
        S.frameAt = t;
        render(config, t);
        renderAlarms(config, frame, onPage);
        var sound = audio();
        if (sound) {
            sound.update({
                sounding: frame.sounding === undefined ? null : frame.sounding,
                audio_paused_until: frame.audio_paused_until,
                now: frame.now,
            });
        }
        var relay = frame.relay === "down" || frame.relay === "up"
            ? {state: frame.relay, detail: String(frame.relay_detail || "")} : null;
        var relayChanged = (S.relay && S.relay.state + S.relay.detail) !==
            (relay && relay.state + relay.detail);
        S.relay = relay;
        if (S.framesSinceOpen === 1 || relayChanged) {
            setBadge(config, t);
        }
        return nu();
    }

    function on_station_state(state, config) {
        if (!state || !config) {
            return nu();
        }
        var t = now();
        S.readyState = state.readyState;
        if (state.readyState === WebSocket.OPEN) {
            S.openedAt = t;
            S.closedUnopened = 0;
            S.framesSinceOpen = 0;
        } else if (state.readyState === WebSocket.CLOSED) {
            S.closedUnopened += 1;
            scheduleReconnect(config);
        } else {
            S.connectStartedAt = t;
        }
        setBadge(config, t);
        return nu();
    }

    /** The page's clock (called by its timer, startTicker): ages and states since the last
     * frame, the socket's watchdogs, the badge. */
    function on_station_tick(n, config) {
        if (!config || !mounted()) {
            return nu();
        }
        S.ticks += 1;
        var t = now();
        var tm = timing();
        var rs = S.readyState;
        // Watchdogs: a socket can look open and be dead (no TCP reset), or hang while connecting.
        if (rs === WebSocket.OPEN && S.openedAt &&
                t - Math.max(S.lastMessageAt, S.openedAt) > tm.silentSocketMs) {
            reconnect(config);
        } else if (rs === WebSocket.CONNECTING && S.connectStartedAt &&
                t - S.connectStartedAt > tm.connectTimeoutMs) {
            reconnect(config);
        } else if (rs === WebSocket.CLOSED && S.timer === null) {
            scheduleReconnect(config);
        }
        setBadge(config, t);
        render(config, t);
        return nu();
    }

    window.addEventListener("resize", function () {
        S.sizeEpoch += 1;
    });

    // Add to the namespace object, whichever asset made it first (see hrdash.js).
    window.dash_clientside = window.dash_clientside || {};
    var ns = (window.dash_clientside.hrdash = window.dash_clientside.hrdash || {});
    ns.station_connect = station_connect;
    ns.on_station_message = on_station_message;
    ns.on_station_state = on_station_state;
    ns.on_station_tick = on_station_tick;

    // Pure helpers (and the per-tab state S), for tests and the console.
    window.hrdashStation = {
        parseFrame: parseFrame,
        tileState: tileState,
        tileView: tileView,
        ageText: ageText,
        highestAlarm: highestAlarm,
        alarmList: alarmList,
        tileAck: tileAck,
        dispose: function () {
            document.removeEventListener("click", onAckClick);
        },
        bpmText: bpmText,
        stateLabel: stateLabel,
        mergeSpark: mergeSpark,
        sparkPoints: sparkPoints,
        badgeState: badgeState,
        render: render,
        sparkMinSpan: SPARK_MIN_SPAN,
        snapshotRetryMs: SNAPSHOT_RETRY_MS,
        snapshotRetries: SNAPSHOT_RETRIES,
        state: S,
    };
})();
