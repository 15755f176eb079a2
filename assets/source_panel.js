/*
 * hrdash — the Source panel (the collapsible <details> below the header).
 *
 * Fed only by the bridge's status frames (at least one a second), which on_message in hrdash.js
 * hands to window.hrdashSource.onStatus(frame, config); readings frames never reach this file.
 *   - The summary line (display name, upstream state, frames / rejected) is updated on every
 *     status frame, and only when its text changes.
 *   - The body is touched only while the panel is open. Opening it sends
 *     {"type": "detail", "on": true, "nonce": k} through the socket component's `send` prop; from
 *     then on the bridge adds "source_detail" (redacted URL, mapping, last raw frame, last
 *     rejected frame, and "recorder": the history's status, shown as one line) to the status
 *     frames of this connection. Closing sends "on": false. The
 *     subscription is per connection: it is sent again when the socket (re)opens, and again when
 *     status frames keep arriving without (or with) source_detail against the panel's state,
 *     since the socket component sends only the last of several `send` values set in one render.
 *
 * Upstream text (raw frames, rejection details) may hold markup: it is only ever written as a
 * string `children` prop, which React renders as a text node, never as HTML.
 */
(function () {
    "use strict";

    var RESUBSCRIBE_MS = 2000; // re-ask the bridge when frames disagree with the panel this long
    var LAST_FRAME_CHARS = 4096; // the bridge cuts the last raw frame at this length
    var LAST_REJECTED_CHARS = 1024;
    var WS_OPEN = 1;
    var DASH = "–"; // en dash: no value

    var P = {
        open: false,
        config: null,
        nonce: 0,
        askedAt: -Infinity, // performance.now() of the last detail request
        status: null, // last status frame
        written: {}, // "id|prop" → last value written, to skip identical writes
        rawFrame: null, // last raw frame rendered, and its pretty form
        prettyFrame: "",
        parsedFrame: false,
    };

    function setProps(id, props) {
        window.dash_clientside.set_props(id, props);
    }

    function put(id, prop, value) {
        var key = id + "|" + prop;
        var text = typeof value === "string" ? value : JSON.stringify(value);
        if (P.written[key] === text) {
            return;
        }
        P.written[key] = text;
        var props = {};
        props[prop] = value;
        setProps(id, props);
    }

    function text(id, value) {
        put(id, "children", value === null || value === undefined || value === "" ? DASH : String(value));
    }

    function pad(n, width) {
        var s = String(n);
        while (s.length < width) {
            s = "0" + s;
        }
        return s;
    }

    function finite(x) {
        return typeof x === "number" && isFinite(x);
    }

    /** Unix ms → local "HH:MM:SS", with the date in front when it is not today. */
    function localTime(ms, withMs) {
        var d = new Date(ms);
        var t = pad(d.getHours(), 2) + ":" + pad(d.getMinutes(), 2) + ":" + pad(d.getSeconds(), 2);
        if (withMs) {
            t += "." + pad(d.getMilliseconds(), 3);
        }
        if (d.toDateString() !== new Date().toDateString()) {
            t = d.getFullYear() + "-" + pad(d.getMonth() + 1, 2) + "-" + pad(d.getDate(), 2) + " " + t;
        }
        return t;
    }

    /** Milliseconds → "12 s", "3 min 12 s", "2 h 5 min", "3 d 4 h". */
    function duration(ms) {
        var s = Math.max(0, Math.floor(ms / 1000));
        if (s < 60) {
            return s + " s";
        }
        if (s < 3600) {
            return Math.floor(s / 60) + " min " + (s % 60) + " s";
        }
        if (s < 86400) {
            return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
        }
        return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
    }

    function ago(at, now) {
        if (!finite(now) || now - at < 1000) {
            return "just now";
        }
        return duration(now - at) + " ago";
    }

    function count(x) {
        return finite(x) ? String(x) : "0";
    }

    /** 12345 → "12,345" (the same on every locale). */
    function thousands(x) {
        return count(x).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    }

    function plural(n, one, many) {
        return thousands(n) + " " + (n === 1 ? one : many);
    }

    /**
     * The history's recorder (its status(), or {"db": ":memory:", "state": "off"}) in one line:
     * "recording to hrdash.db — 12,345 readings written", "not recording — database is locked
     * (since 12:01:02); 240 readings waiting", "off (HRDASH_DB=:memory:)". Text only.
     */
    function historyLine(r) {
        if (!r || typeof r !== "object") {
            return DASH;
        }
        var db = typeof r.db === "string" ? r.db : "";
        if (r.state === "off") {
            return "off (HRDASH_DB=" + db + ")";
        }
        var written = plural(r.written, "reading", "readings") + " written";
        var extra = finite(r.dropped) && r.dropped > 0
            ? " · " + plural(r.dropped, "reading", "readings") + " dropped" : "";
        if (r.state === "ok") {
            return "recording to " + db + " — " + written + extra;
        }
        if (r.state === "starting") {
            return "starting — opening " + db;
        }
        if (r.state === "closed") {
            return "closed — " + written + " to " + db + extra;
        }
        var cause = (typeof r.detail === "string" && r.detail) || r.cause || "unknown error";
        var since = finite(r.since) ? " (since " + localTime(r.since, false) + ")" : "";
        var waiting = finite(r.pending) ? "; " + plural(r.pending, "reading", "readings") + " waiting" : "";
        return "not recording to " + db + " — " + cause + since + waiting + extra;
    }

    /** Raw upstream text → [shown text, parsed as JSON?]: pretty-printed when it parses. */
    function pretty(raw) {
        try {
            return [JSON.stringify(JSON.parse(raw), null, 2), true];
        } catch (e) {
            return [raw, false];
        }
    }

    function stateName(upstream) {
        return upstream === "live" || upstream === "down" || upstream === "connecting"
            ? upstream : "unknown";
    }

    function mappingOrigin(m) {
        if (m.confidence === "pending") {
            return "being inferred from the first frames";
        }
        if (m.inferred) {
            return "inferred · confidence " + (m.confidence || "unknown");
        }
        if (m.confidence === "default") {
            return "default (frames fit value/time)";
        }
        return "configured";
    }

    function reasonRows(byReason) {
        var entries = Object.keys(byReason || {}).map(function (reason) {
            return [reason, byReason[reason]];
        }).filter(function (e) {
            return finite(e[1]) && e[1] > 0;
        });
        entries.sort(function (a, b) {
            return b[1] - a[1] || (a[0] < b[0] ? -1 : 1);
        });
        function cell(children, className, extra) {
            var props = {children: children, className: className};
            Object.keys(extra || {}).forEach(function (k) {
                props[k] = extra[k];
            });
            return {type: "Td", namespace: "dash_html_components", props: props};
        }
        if (!entries.length) {
            return [{type: "Tr", namespace: "dash_html_components", props: {
                children: [cell("none", "hr-reasons__none", {colSpan: 2})],
            }}];
        }
        return entries.map(function (e) {
            return {type: "Tr", namespace: "dash_html_components", props: {
                "data-reason": e[0],
                children: [cell(e[0], "hr-mono"), cell(String(e[1]), "hr-num")],
            }};
        });
    }

    function ask(on) {
        var core = window.hrdashCore;
        if (!P.config || !core || core.state.readyState !== WS_OPEN) {
            return;
        }
        P.nonce += 1;
        P.askedAt = performance.now();
        setProps(P.config.ids.ws, {send: JSON.stringify({type: "detail", on: on, nonce: P.nonce})});
    }

    function renderSummary(ids, frame) {
        var state = stateName(frame.upstream);
        var c = frame.counters || {};
        if (typeof frame.source === "string" && frame.source) {
            text(ids.summary_name, frame.source);
        }
        text(ids.summary_state, state);
        put(ids.summary_state, "className", "hr-state hr-state--" + state);
        text(ids.summary_counts, " · " + count(c.frames) + " frames · " + count(c.rejected) + " rejected");
    }

    function renderBody(ids, frame) {
        var now = finite(frame.now) ? frame.now : Date.now();
        var state = stateName(frame.upstream);
        var c = frame.counters || {};
        var d = frame.source_detail && typeof frame.source_detail === "object" ? frame.source_detail : null;

        // Connection
        text(ids.state, state);
        put(ids.state, "className", "hr-dl__value hr-state hr-state--" + state);
        text(ids.since, finite(frame.since)
            ? localTime(frame.since, false) + " · for " + duration(now - frame.since) : DASH);
        text(ids.detail, frame.detail || "none");

        // Frames
        text(ids.frames, count(c.frames));
        text(ids.accepted, count(c.accepted));
        text(ids.rejected, count(c.rejected));
        put(ids.reasons, "children", reasonRows(c.rejected_by_reason));

        // Mapping (the status frame's, until the detail brings the transform hook too)
        var m = (d && d.mapping) || frame.mapping || {};
        text(ids.map_value, m.value || DASH);
        text(ids.map_time, m.time || DASH);
        text(ids.map_origin, mappingOrigin(m));

        // Last rejection (the status frame has reason, detail and time; the raw frame is detail)
        var lr = frame.last_rejection;
        if (lr && typeof lr === "object") {
            text(ids.rej_reason, lr.reason);
            text(ids.rej_detail, lr.detail);
            text(ids.rej_at, finite(lr.at) ? localTime(lr.at, true) + " · " + ago(lr.at, now) : DASH);
        } else {
            text(ids.rej_reason, "none");
            text(ids.rej_detail, DASH);
            text(ids.rej_at, DASH);
        }

        if (!d) {
            return; // the bridge has not answered the detail request yet: keep what is shown
        }
        text(ids.url, d.url);
        text(ids.map_transform, m.transform || "none");
        if (ids.history) {
            text(ids.history, historyLine(d.recorder));
            var recording = d.recorder && d.recorder.state === "error" ? " hr-state--down" : "";
            put(ids.history, "className", "hr-panel__meta" + recording);
        }

        var raw = typeof d.last_frame === "string" ? d.last_frame : null;
        if (raw !== P.rawFrame) {
            P.rawFrame = raw;
            var shown = raw === null ? ["", false] : pretty(raw);
            P.prettyFrame = shown[0];
            P.parsedFrame = shown[1];
        }
        put(ids.last_frame, "children", P.prettyFrame);
        var meta = DASH;
        if (raw === null) {
            meta = "no frame received yet";
        } else {
            meta = finite(d.last_frame_at)
                ? "received " + localTime(d.last_frame_at, true) + " · " + ago(d.last_frame_at, now)
                : "received";
            meta += P.parsedFrame ? " · JSON, pretty-printed" : " · not JSON, as received";
            if (raw.length >= LAST_FRAME_CHARS) {
                meta += " · first " + LAST_FRAME_CHARS + " characters";
            }
        }
        text(ids.last_frame_at, meta);
        var rejected = typeof d.last_rejected_frame === "string" ? d.last_rejected_frame : "";
        if (rejected.length >= LAST_REJECTED_CHARS) {
            rejected += "\n… (first " + LAST_REJECTED_CHARS + " characters)";
        }
        put(ids.rej_frame, "children", rejected);
    }

    /** A status frame from the bridge (called by on_message in hrdash.js). */
    function onStatus(frame, config) {
        P.config = config;
        P.status = frame;
        var ids = config.ids && config.ids.source;
        if (!ids) {
            return;
        }
        renderSummary(ids, frame);
        var hasDetail = !!frame.source_detail;
        if (hasDetail !== P.open && performance.now() - P.askedAt > RESUBSCRIBE_MS) {
            ask(P.open); // a lost request, a reconnect we missed, or the panel closed meanwhile
        }
        if (P.open) {
            renderBody(ids, frame);
        }
    }

    /** The socket's readyState changed (called by on_state in hrdash.js). */
    function onSocketState(readyState, config) {
        P.config = config;
        if (readyState === WS_OPEN) {
            P.askedAt = -Infinity;
            if (P.open) {
                ask(true); // the subscription is per connection
            }
        }
    }

    function onToggle(event) {
        var el = event.target;
        if (!el || el.tagName !== "DETAILS" || !el.classList.contains("hr-panel")) {
            return;
        }
        if (el.open === P.open) {
            return;
        }
        P.open = el.open;
        ask(P.open);
        if (P.open && P.status && P.config && P.config.ids.source) {
            renderBody(P.config.ids.source, P.status);
        }
    }

    // "toggle" does not bubble: listen in the capture phase.
    document.addEventListener("toggle", onToggle, true);

    window.hrdashSource = {
        onStatus: onStatus,
        onSocketState: onSocketState,
        duration: duration,
        pretty: pretty,
        historyLine: historyLine,
        state: P,
    };
})();
