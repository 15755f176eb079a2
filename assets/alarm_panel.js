/*
 * hrdash — the monitor's Alarms panel (hrdash/callbacks/alarm_panel.py builds it): the patient's
 * current alarms with their Acknowledge buttons, the limits editor and the alarm log.
 *
 *   alarm_panel_start(alarmConfig, pageConfig)   clientside callback: the panel mounted
 *   window.hrdashAlarms.onFrame(frame, config)   every "alarm" and "error" frame of the page's
 *                                                socket, read from the socket itself (below)
 *
 * Frames (the bridge's, JSON):
 *   {"type":"alarm","patient":ID,"alarms":[ALARM...],"limits":{extreme_low,low,high,
 *    extreme_high},"sounding":"high"|"medium"|"low"|null,"audio_paused_until":MS|null}
 *   {"type":"error","message":"<one line>","request":"ack"|"limits"|"audio_pause"}
 * Sent on the page's socket (the hr-ws component's `send`; the nonce makes a repeat a new value):
 *   {"type":"ack","alarm":ID,"nonce":k}
 *   {"type":"limits","patient":ID,"extreme_low":N,"low":N,"high":N,"extreme_high":N,"nonce":k}
 *
 * Nothing here asks the Dash server per frame: the log is fetched from the Dash server's JSON
 * route on start and once, LOG_REFETCH_MS after the last frame that changed the alarm state
 * (the recorder commits about once a second). Every string from the bridge or the log is set
 * as text, never as HTML. The sound (assets/alarm_sound.js, window.hrdashAudio, when present)
 * gets each alarm frame's `sounding` and `audio_paused_until` (and `now`, when the frame has
 * it), sends its pause through this page's socket, and is shown an audio_pause error frame.
 * A message is sent only while the socket is open (else the control says it was not sent).
 */
(function () {
    "use strict";

    var TICK_MS = 1000; // the "for 2 min 5 s" of each current alarm is rewritten this often
    var LIMITS_ANSWER_MS = 5000; // no frame with the sent limits nor an error by then: say so
    var DASH = "\u2013";
    var WS_OPEN = 1;
    var NOT_SENT = "Not connected to the bridge: not sent.";

    // Per-tab state.
    var S = {
        cfg: null, // the alarm config store's data (Python's constants, labels, ids)
        page: null, // the page config (patient, prefix, ids)
        frame: null, // the last alarm frame
        stateKey: null, // what of the last frame the log depends on (ids, states, limits)
        listKey: null, // what the current alarms list shows (to skip identical writes)
        shownLimits: null, // the limits written into the fields
        dirty: {}, // fields typed into since they were last filled
        pending: null, // limits sent and not yet seen in a frame: {limits, timer}
        logTimer: null,
        logAsked: 0, // the number of the last log request (an older answer is dropped)
        logKey: null,
        ticker: null,
        sent: 0, // messages sent (each one's nonce)
        panel: null, // the panel element the listeners are on
        skew: 0, // ms the bridge's clock is ahead of the browser's (from a frame's `now`)
    };

    // -- pure helpers (window.hrdashAlarms exposes them for tests) -------------------------------

    function pad(n) {
        return n < 10 ? "0" + n : String(n);
    }

    function finite(x) {
        return typeof x === "number" && isFinite(x);
    }

    /** Unix ms → local "HH:MM:SS". */
    function timeText(ms) {
        if (!finite(ms)) {
            return "";
        }
        var d = new Date(ms);
        return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
    }

    /** Unix ms → local "YYYY-MM-DD HH:MM:SS". */
    function dateTimeText(ms) {
        if (!finite(ms)) {
            return "";
        }
        var d = new Date(ms);
        return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
            timeText(ms);
    }

    /** A duration in ms as "45 s", "2 min 5 s", "3 h 4 min" (negative: 0 s). */
    function durationText(ms) {
        var s = Math.max(0, Math.floor((finite(ms) ? ms : 0) / 1000));
        if (s < 60) {
            return s + " s";
        }
        if (s < 3600) {
            return Math.floor(s / 60) + " min " + (s % 60) + " s";
        }
        return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    }

    /** A number as the bridge gave it, at most one decimal. */
    function num(x) {
        if (!finite(x)) {
            return DASH;
        }
        return Math.round(x) === x ? String(x) : x.toFixed(1);
    }

    function below(kind) {
        return kind === "hr_low" || kind === "hr_extreme_low";
    }

    /** What an alarm measured against what: "162 bpm > 150", "no reading for 10 s". */
    function valueText(alarm) {
        if (alarm.kind === "no_signal") {
            return "no reading for " + num(alarm.limit) + " s";
        }
        if (alarm.kind === "source_down") {
            return "not connected for " + num(alarm.limit) + " s";
        }
        var sign = below(alarm.kind) ? " < " : " > ";
        return num(alarm.value) + " bpm" + (finite(alarm.limit) ? sign + num(alarm.limit) : "");
    }

    /**
     * The current alarms as the panel shows them: every alarm of the frame that has not ended,
     * highest priority first, oldest first within one; each {id, priority, state, marker,
     * label, since, sinceText, forText, valueText, stateText, ackable}.
     */
    function alarmRows(alarms, cfg, nowMs) {
        var order = cfg.priorities;
        var out = [];
        (Array.isArray(alarms) ? alarms : []).forEach(function (a) {
            if (!a || typeof a !== "object" || a.state === "ended" ||
                order.indexOf(a.priority) === -1) {
                return;
            }
            var since = finite(a.since) ? a.since : null;
            out.push({
                id: String(a.id),
                priority: a.priority,
                state: String(a.state),
                marker: cfg.markers[a.priority] || "",
                label: cfg.kind_labels[a.kind] || String(a.kind),
                since: since,
                sinceText: since === null ? "" : "since " + timeText(since),
                forText: since === null ? "" : "for " + durationText(nowMs - since),
                valueText: valueText(a),
                stateText: cfg.state_labels[a.state] || String(a.state),
                ackable: cfg.ackable.indexOf(a.state) !== -1,
            });
        });
        out.sort(function (x, y) {
            return order.indexOf(x.priority) - order.indexOf(y.priority) ||
                (x.since || 0) - (y.since || 0) || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0);
        });
        return out;
    }

    /** The highest priority among the active and latched alarms, or "none". */
    function highest(rows, cfg) {
        var best = "none";
        rows.forEach(function (r) {
            if (r.ackable && (best === "none" ||
                cfg.priorities.indexOf(r.priority) < cfg.priorities.indexOf(best))) {
                best = r.priority;
            }
        });
        return best;
    }

    /** A field's text as a number (NaN when it is not one). */
    function parseLimit(text) {
        var t = String(text === undefined || text === null ? "" : text).trim();
        if (!/^[+-]?(\d+\.?\d*|\.\d+)$/.test(t)) {
            return NaN;
        }
        return Number(t);
    }

    /**
     * The limits typed in ({name: text}), checked with the rules of hrdash.alarms.Limits.check:
     * each a number within limit_min-limit_max, extreme_low < low < high < extreme_high.
     * {ok: true, limits: {name: number}} or {ok: false, field, message} (one line).
     */
    function checkLimits(texts, cfg) {
        var limits = {};
        var names = cfg.limit_order;
        for (var i = 0; i < names.length; i++) {
            var name = names[i];
            var value = parseLimit(texts[name]);
            if (!finite(value)) {
                return {ok: false, field: name, message: name + ": expected a number"};
            }
            if (value < cfg.limit_min || value > cfg.limit_max) {
                return {
                    ok: false,
                    field: name,
                    message: name + ": expected " + cfg.limit_min + "-" + cfg.limit_max +
                        " bpm, got " + num(value),
                };
            }
            limits[name] = value;
        }
        for (var j = 1; j < names.length; j++) {
            var lower = names[j - 1];
            var upper = names[j];
            if (limits[lower] >= limits[upper]) {
                return {
                    ok: false,
                    field: upper,
                    message: upper + ": expected more than " + lower + " (" + num(limits[lower]) +
                        "), got " + num(limits[upper]),
                };
            }
        }
        return {ok: true, limits: limits};
    }

    function sameLimits(a, b, cfg) {
        if (!a || !b) {
            return false;
        }
        return cfg.limit_order.every(function (name) {
            return a[name] === b[name];
        });
    }

    /** What of an alarm frame the log depends on: the alarms' ids and states, the limits. */
    function stateKey(frame, cfg) {
        var alarms = Array.isArray(frame.alarms) ? frame.alarms : [];
        var parts = alarms.map(function (a) {
            return a ? String(a.id) + "=" + String(a.state) : "";
        });
        parts.sort();
        var limits = frame.limits || {};
        return parts.join(",") + "|" + cfg.limit_order.map(function (name) {
            return String(limits[name]);
        }).join(",");
    }

    function limitsText(limits, cfg) {
        return cfg.limit_order.map(function (name) {
            return num(limits[name]);
        }).join(" / ");
    }

    /** A log entry's cell texts: [time, event, kind, priority, value, limit, origin]. */
    function logCells(entry, cfg) {
        var e = entry || {};
        var value;
        var limit;
        if (e.event === "limits_changed" && e.value && e.limit && typeof e.limit === "object") {
            value = limitsText(e.value, cfg);
            limit = limitsText(e.limit, cfg);
        } else if (e.kind === "no_signal" || e.kind === "source_down") {
            value = DASH;
            limit = finite(e.limit) ? num(e.limit) + " s" : DASH;
        } else {
            value = finite(e.value) ? num(e.value) + " bpm" : DASH;
            limit = finite(e.limit) ? num(e.limit) + " bpm" : DASH;
        }
        var priority = e.priority ? (cfg.markers[e.priority] || "") + " " + e.priority : DASH;
        return [
            dateTimeText(e.time),
            String(e.event || "").replace(/_/g, " "),
            e.kind ? cfg.kind_labels[e.kind] || String(e.kind) : DASH,
            priority.trim(),
            value,
            limit,
            e.origin === null || e.origin === undefined || e.origin === "" ? DASH : String(e.origin),
        ];
    }

    /** Whether an error frame answers a `request` ("ack", "limits"): its `request`, or (a
     * bridge that does not name it) the message's first word. */
    function answers(frame, request) {
        if (typeof frame.request === "string") {
            return frame.request === request;
        }
        return String(frame.message || "").indexOf(request + ":") === 0;
    }

    // -- the page ----------------------------------------------------------------------------------

    /** Now on the bridge's clock, as well as the frames tell it (Unix ms). */
    function bridgeNow() {
        return Date.now() + S.skew;
    }

    function byId(id) {
        return document.getElementById(id);
    }

    function el(tag, cls, text) {
        var node = document.createElement(tag);
        if (cls) {
            node.className = cls;
        }
        if (text !== undefined) {
            node.textContent = text;
        }
        return node;
    }

    function setProps(id, props) {
        window.dash_clientside.set_props(id, props);
    }

    /** Whether the page's socket is open (assets/hrdash.js keeps its state). */
    function connected() {
        var core = window.hrdashCore;
        return !!(core && core.state && core.state.readyState === WS_OPEN);
    }

    /** Send a message (an object, or its JSON) on the page's socket; false when it is not
     * open (nothing is sent: a message is never queued to go out later). */
    function send(message) {
        if (!S.cfg || !connected()) {
            return false;
        }
        var obj = typeof message === "string" ? JSON.parse(message) : Object.assign({}, message);
        S.sent += 1;
        obj.nonce = S.sent;
        setProps(S.cfg.ids.ws, {send: JSON.stringify(obj)});
        return true;
    }

    function setLine(id, text, kind) {
        var node = byId(id);
        if (!node) {
            return;
        }
        node.textContent = text;
        node.setAttribute("data-kind", kind || "");
        node.hidden = !text;
    }

    function renderList(nowMs) {
        var cfg = S.cfg;
        var list = byId(cfg.ids.current);
        if (!list) {
            return;
        }
        var rows = alarmRows(S.frame ? S.frame.alarms : [], cfg, nowMs);
        var panel = byId(cfg.ids.panel);
        if (panel) {
            panel.setAttribute("data-alarm", highest(rows, cfg));
        }
        var key = rows.map(function (r) {
            return [r.id, r.state, r.valueText, r.sinceText].join("|");
        }).join("\n");
        if (key === S.listKey) {
            updateDurations(nowMs);
            return;
        }
        S.listKey = key;
        var nodes = rows.map(function (r) {
            var li = el("li", "hr-alarm hr-alarm--" + r.priority);
            li.setAttribute("data-alarm-id", r.id);
            li.setAttribute("data-priority", r.priority);
            li.setAttribute("data-state", r.state);
            li.appendChild(el("span", "hr-alarm__marker", r.marker));
            li.appendChild(el("span", "hr-alarm__label", r.label));
            li.appendChild(el("span", "hr-alarm__value", r.valueText));
            var when = el("span", "hr-alarm__when", r.sinceText);
            var dur = el("span", "hr-alarm__for", r.forText);
            if (r.since !== null) {
                dur.setAttribute("data-since", String(r.since));
            }
            when.appendChild(document.createTextNode(" · "));
            when.appendChild(dur);
            li.appendChild(when);
            li.appendChild(el("span", "hr-alarm__state", r.stateText));
            if (r.ackable) {
                var button = el("button", cfg.ack_class + " hr-button", "Acknowledge");
                button.type = "button";
                button.setAttribute("data-alarm-id", r.id);
                li.appendChild(button);
            }
            return li;
        });
        if (!nodes.length) {
            nodes.push(el("li", "hr-alarms__empty", cfg.no_alarms));
        }
        list.replaceChildren.apply(list, nodes);
    }

    function updateDurations(nowMs) {
        var list = S.cfg && byId(S.cfg.ids.current);
        if (!list) {
            return;
        }
        list.querySelectorAll(".hr-alarm__for[data-since]").forEach(function (node) {
            var text = "for " + durationText(nowMs - Number(node.getAttribute("data-since")));
            if (node.textContent !== text) {
                node.textContent = text;
            }
        });
    }

    function limitField(name) {
        return byId(S.cfg.ids.limit_inputs[name]);
    }

    /** The limit whose input `el` is, or null. */
    function limitOf(el) {
        var inputs = S.cfg && S.cfg.ids.limit_inputs;
        if (!inputs || !el || !el.id) {
            return null;
        }
        for (var name in inputs) {
            if (Object.prototype.hasOwnProperty.call(inputs, name) && inputs[name] === el.id) {
                return name;
            }
        }
        return null;
    }

    /** Write the frame's limits into the fields not typed into. */
    function fillLimits(limits) {
        if (!limits || sameLimits(limits, S.shownLimits, S.cfg)) {
            return;
        }
        S.shownLimits = limits;
        S.cfg.limit_order.forEach(function (name) {
            if (!S.dirty[name] && finite(limits[name])) {
                setProps(S.cfg.ids.limit_inputs[name], {value: limits[name]});
            }
        });
    }

    function settlePending() {
        if (S.pending) {
            clearTimeout(S.pending.timer);
            S.pending = null;
        }
    }

    function apply() {
        var cfg = S.cfg;
        var texts = {};
        cfg.limit_order.forEach(function (name) {
            var field = limitField(name);
            texts[name] = field ? field.value : "";
        });
        var checked = checkLimits(texts, cfg);
        if (!checked.ok) {
            setLine(cfg.ids.limits_message, checked.message, "error");
            var bad = limitField(checked.field);
            if (bad) {
                bad.focus();
            }
            return;
        }
        var current = S.frame && S.frame.limits;
        if (sameLimits(checked.limits, current, cfg)) {
            setLine(cfg.ids.limits_message, "These are the limits in effect.", "ok");
            S.dirty = {};
            return;
        }
        settlePending();
        var message = {type: "limits", patient: S.page.patient};
        cfg.limit_order.forEach(function (name) {
            message[name] = checked.limits[name];
        });
        if (!send(message)) {
            setLine(cfg.ids.limits_message, NOT_SENT, "error");
            return;
        }
        S.pending = {
            limits: checked.limits,
            timer: setTimeout(function () {
                S.pending = null;
                setLine(cfg.ids.limits_message,
                    "No answer from the bridge: the limits may not be applied.", "error");
            }, LIMITS_ANSWER_MS),
        };
        setLine(cfg.ids.limits_message, "Applying…", "pending");
    }

    function onClick(event) {
        var target = event.target;
        if (!(target instanceof Element) || !S.cfg) {
            return;
        }
        var ack = target.closest("." + S.cfg.ack_class);
        if (ack && ack.hasAttribute("data-alarm-id")) {
            if (!send({type: "ack", alarm: ack.getAttribute("data-alarm-id")})) {
                setLine(S.cfg.ids.message, NOT_SENT, "error");
                return;
            }
            ack.disabled = true;
            ack.textContent = "Acknowledging…";
            setLine(S.cfg.ids.message, "", "");
            return;
        }
        if (target.closest("#" + S.cfg.ids.apply)) {
            apply();
        }
    }

    function onInput(event) {
        var name = limitOf(event.target);
        if (name !== null) {
            S.dirty[name] = true;
        }
    }

    function onKey(event) {
        if (event.key === "Enter" && limitOf(event.target) !== null) {
            apply();
        }
    }

    // -- the log -----------------------------------------------------------------------------------

    function renderLog(entries) {
        var cfg = S.cfg;
        var table = byId(cfg.ids.log);
        var body = table && table.tBodies[0];
        if (!body) {
            return;
        }
        var shown = entries.slice(0, cfg.log_shown);
        var key = JSON.stringify(shown);
        if (key !== S.logKey) {
            S.logKey = key;
            body.replaceChildren.apply(body, shown.map(function (entry) {
                var tr = el("tr", "hr-alarm-log__row");
                tr.setAttribute("data-event", String(entry.event));
                if (entry.priority) {
                    tr.setAttribute("data-priority", String(entry.priority));
                }
                logCells(entry, cfg).forEach(function (text) {
                    tr.appendChild(el("td", "", text));
                });
                return tr;
            }));
        }
        setLine(cfg.ids.log_status, shown.length
            ? "Newest " + shown.length + (shown.length === 1 ? " entry" : " entries") +
              ", newest first."
            : "No alarm log entries yet.", "");
    }

    function fetchLog() {
        var cfg = S.cfg;
        if (!cfg) {
            return;
        }
        S.logAsked += 1;
        var asked = S.logAsked;
        var url = cfg.log_url + (cfg.log_url.indexOf("?") === -1 ? "?" : "&") + "limit=" +
            cfg.log_shown;
        fetch(url, {cache: "no-store", headers: {Accept: "application/json"}})
            .then(function (response) {
                if (!response.ok) {
                    // The routes answer errors with one line of plain text; anything else
                    // (a proxy's HTML page) is named by its status only.
                    var plain = /^text\/plain/.test(response.headers.get("Content-Type") || "");
                    return response.text().then(function (text) {
                        var line = plain ? text.trim().split("\n")[0] : "";
                        throw new Error(line || "HTTP " + response.status);
                    });
                }
                return response.json();
            })
            .then(function (entries) {
                if (asked === S.logAsked && S.cfg === cfg) {
                    renderLog(Array.isArray(entries) ? entries : []);
                }
            })
            .catch(function (e) {
                if (asked === S.logAsked && S.cfg === cfg) {
                    setLine(cfg.ids.log_status, "The log cannot be read: " + e.message, "error");
                }
            });
    }

    function scheduleLog() {
        if (S.logTimer !== null) {
            clearTimeout(S.logTimer);
        }
        S.logTimer = setTimeout(function () {
            S.logTimer = null;
            fetchLog();
        }, S.cfg.log_refetch_ms);
    }

    // -- frames ------------------------------------------------------------------------------------

    function audio(frame) {
        var sound = window.hrdashAudio;
        if (!sound || typeof sound.update !== "function") {
            return;
        }
        try {
            var like = {
                sounding: frame.sounding === undefined ? null : frame.sounding,
                audio_paused_until: frame.audio_paused_until === undefined
                    ? null : frame.audio_paused_until,
            };
            if (finite(frame.now)) {
                like.now = frame.now; // the bridge's clock, for the pause's countdown
            }
            sound.update(like);
        } catch (e) {
            if (window.console) {
                window.console.warn("hrdash alarm sound:", e);
            }
        }
    }

    function showFrame(frame) {
        var cfg = S.cfg;
        renderList(bridgeNow());
        fillLimits(frame.limits);
        if (S.pending && sameLimits(frame.limits, S.pending.limits, cfg)) {
            settlePending();
            S.dirty = {};
            S.shownLimits = null;
            fillLimits(frame.limits);
            setLine(cfg.ids.limits_message, "Limits applied at " + timeText(Date.now()) + ".",
                "ok");
        }
        var key = stateKey(frame, cfg);
        if (S.stateKey !== null && key !== S.stateKey) {
            scheduleLog();
        }
        S.stateKey = key;
    }

    function onFrame(frame, pageConfig) {
        if (!frame || typeof frame !== "object") {
            return;
        }
        if (frame.type === "alarm") {
            if (pageConfig && frame.patient !== undefined && pageConfig.patient &&
                frame.patient !== pageConfig.patient) {
                return; // another patient's (a socket from before a page change)
            }
            S.frame = frame;
            // How long an alarm lasts is counted on the bridge's clock when the frame says
            // what it is (its `now`), else on the browser's.
            S.skew = finite(frame.now) ? frame.now - Date.now() : 0;
            audio(frame);
            if (S.cfg) {
                showFrame(frame);
            }
        } else if (frame.type === "error" && S.cfg) {
            if (answers(frame, "limits")) {
                settlePending();
                setLine(S.cfg.ids.limits_message, String(frame.message || ""), "error");
            } else if (answers(frame, "ack")) {
                setLine(S.cfg.ids.message, String(frame.message || ""), "error");
                S.listKey = null; // the buttons come back
                renderList(bridgeNow());
            } else if (answers(frame, "audio_pause") && window.hrdashAudio &&
                typeof window.hrdashAudio.error === "function") {
                window.hrdashAudio.error("Audio pause refused: " + String(frame.message || ""));
            }
        }
    }

    function listen(panel) {
        if (S.panel === panel) {
            return;
        }
        S.panel = panel;
        panel.addEventListener("click", onClick);
        panel.addEventListener("input", onInput);
        panel.addEventListener("keydown", onKey);
    }

    /** The clientside callback: the panel (re)mounted with its config. */
    function alarm_panel_start(cfg, pageConfig) {
        var nu = window.dash_clientside.no_update;
        if (!cfg || !pageConfig) {
            return nu;
        }
        var samePatient = S.page && S.page.patient === pageConfig.patient;
        S.cfg = cfg;
        S.page = pageConfig;
        S.listKey = null;
        S.logKey = null;
        S.shownLimits = null;
        S.dirty = {};
        settlePending();
        if (!samePatient && S.frame && S.frame.patient !== pageConfig.patient) {
            S.frame = null;
        }
        S.stateKey = null;
        var panel = byId(cfg.ids.panel);
        if (panel) {
            listen(panel);
        }
        if (S.ticker === null) {
            S.ticker = setInterval(function () {
                if (S.cfg) {
                    updateDurations(bridgeNow());
                }
            }, TICK_MS);
        }
        var sound = window.hrdashAudio;
        if (sound && typeof sound.setSender === "function") {
            sound.setSender(send);
        }
        if (S.frame) {
            showFrame(S.frame);
        } else {
            renderList(bridgeNow());
        }
        fetchLog();
        return nu;
    }

    // -- the frames, from the socket itself ----------------------------------------------------
    //
    // Dash hands the page's callbacks only the last of the socket messages that arrive within
    // one render, and an alarm frame is sent once, when the state changes, often a few ms before
    // a readings frame (on connect: readings, status, alarm, then the next readings): through
    // the hr-ws component's `message` it is lost. So the panel listens on the socket itself:
    // every WebSocket the page opens gets a listener that picks out the alarm and error frames
    // (their "type" is the first key the bridge writes) and leaves everything else to Dash.

    var FRAME_TYPE = /^\{\s*"type"\s*:\s*"(alarm|error)"/;

    function onSocketMessage(event) {
        var data = event.data;
        if (typeof data !== "string" || !FRAME_TYPE.test(data.slice(0, 40))) {
            return;
        }
        try {
            onFrame(JSON.parse(data), S.page);
        } catch (e) {
            if (window.console) {
                window.console.warn("hrdash alarms panel:", e);
            }
        }
    }

    /** window.WebSocket, with onSocketMessage listening on every socket it opens. */
    function tapSockets() {
        var Native = window.WebSocket;
        if (typeof Native !== "function" || Native.hrdashTapped) {
            return;
        }
        var Tapped = function WebSocket(url, protocols) {
            var ws = protocols === undefined ? new Native(url) : new Native(url, protocols);
            ws.addEventListener("message", function (event) {
                var panel = window.hrdashAlarms; // this file's, even when evaluated again
                if (panel) {
                    panel.onSocketMessage(event);
                }
            });
            return ws;
        };
        Tapped.prototype = Native.prototype;
        ["CONNECTING", "OPEN", "CLOSING", "CLOSED"].forEach(function (name) {
            Tapped[name] = Native[name];
        });
        Tapped.hrdashTapped = true;
        window.WebSocket = Tapped;
    }

    tapSockets();

    window.dash_clientside = window.dash_clientside || {};
    var ns = (window.dash_clientside.hrdash = window.dash_clientside.hrdash || {});
    ns.alarm_panel_start = alarm_panel_start;

    window.hrdashAlarms = {
        onFrame: onFrame,
        onSocketMessage: onSocketMessage,
        // Pure helpers and the per-tab state, for tests and the console.
        timeText: timeText,
        dateTimeText: dateTimeText,
        durationText: durationText,
        valueText: valueText,
        alarmRows: alarmRows,
        highest: highest,
        parseLimit: parseLimit,
        checkLimits: checkLimits,
        sameLimits: sameLimits,
        stateKey: stateKey,
        logCells: logCells,
        answers: answers,
        state: S,
    };
})();
