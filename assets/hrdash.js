/*
 * hrdash — the per-reading path, entirely in the browser (no request to the Dash server).
 *
 * Wired by hrdash/callbacks/live.py as clientside callbacks in the namespace
 * window.dash_clientside.hrdash:
 *   connect(config)                     page load → the socket's url (resolveWsUrl)
 *   on_message(message, store, config)  a frame from the bridge → window, table, chart, cards
 *                                       (the card written at once, the rest after the next paint)
 *   on_state(state, store, config)      socket opened/closed → reconnect with backoff
 *   on_tick(n, wsState, store, config)  badge, staleness, watchdog on a silent socket
 * Status frames and socket states are also handed to the Source panel (assets/source_panel.js).
 *
 * Bridge protocol (JSON text frames, each with a "type"; unknown types are ignored):
 *   {"type":"readings","run":R,"readings":[{"seq","time","bpm"}...],"first_seq":N,"last_seq":M}
 *   {"type":"status","run":R,"upstream":"connecting"|"live"|"down","detail":"...",
 *    "first_seq":N,"last_seq":M,...}                       on change and at least once a second
 *    (an edge of the Redis fan-out adds "relay":"up"|"down": "down" when Redis or the ingest
 *    is what is away, shown as "Relay down" rather than blaming the patient's service)
 *   browser → bridge: {"type":"resend","since":N,"run":R,"nonce":k}  (reply: readings after N)
 *   reconnect URL:    <ws_url>?since=<seq>&run=<run>&n=<nonce>
 * config.ws_url may be a path (HRDASH_PUBLIC_WS_URL=/ws): it is resolved here, against the page's
 * own location, never on the server from a Host header that a proxy may have rewritten.
 *
 * Dash coalesces socket messages that arrive within one render (only the last reaches us), so
 * every frame triggers a check of the current run's window for missing seqs, and a hole is filled
 * by a resend request (at most one a second) until the window is whole.
 *
 * The window lives in the hr-store (dcc.Store); per-tab mutable state (timers, nonce, arrival
 * times on the browser's monotonic clock) lives in the module-level object S below.
 */
(function () {
    "use strict";

    var BACKOFF_MIN_MS = 500; // first reconnect delay; doubles per failed attempt
    var BACKOFF_MAX_MS = 5000;
    var RESEND_EVERY_MS = 1000; // at most one resend request per second
    var SILENT_SOCKET_MS = 3000; // open socket with no frame at all (heartbeats included) → reconnect
    var CONNECT_TIMEOUT_MS = 5000; // socket stuck in CONNECTING → reconnect
    var Y_PAD = 5; // bpm of room kept above/below a reading outside the base range
    var AFTER_PAINT_MAX_MS = 100; // longest wait for a paint before Dash gets a frame's outputs

    var WS_OPEN = 1;
    var WS_CLOSED = 3;

    // Per-tab mutable state. Times are performance.now() milliseconds.
    var S = {
        nonce: 0,
        backoff: BACKOFF_MIN_MS,
        timer: null, // pending reconnect
        readyState: undefined,
        openedAt: 0,
        connectStartedAt: 0,
        lastFrameAt: 0,
        lastReadingAt: 0, // arrival of the newest reading (fills of older holes do not count)
        lastResendAt: -Infinity,
        status: null, // last status frame
        run: null, // current bridge run, and where to resume it
        resumeSeq: null,
        badge: null, // last badge text+class written, to skip identical writes
        badgeTitle: "",
        timeText: null,
        wsBase: null, // config.ws_url resolved against the page's location (resolveWsUrl)
        closedUnopened: 0, // sockets closed since one last opened (a refused handshake closes)
        alert: null, // text of the origin alert line last written
        pendingOut: null, // on_message outputs waiting for a paint (see on_message)
    };

    function now() {
        return performance.now();
    }

    function pad(n, width) {
        var s = String(n);
        while (s.length < width) {
            s = "0" + s;
        }
        return s;
    }

    /** Unix ms → local "HH:MM:SS.mmm". */
    function clock(ms) {
        if (typeof ms !== "number" || !isFinite(ms)) {
            return "";
        }
        var d = new Date(ms);
        return (
            pad(d.getHours(), 2) + ":" + pad(d.getMinutes(), 2) + ":" + pad(d.getSeconds(), 2) +
            "." + pad(d.getMilliseconds(), 3)
        );
    }

    /** Unix ms → local "YYYY-MM-DD HH:MM:SS.mmm" (Plotly reads date strings as local wall time). */
    function plotTime(ms) {
        var d = new Date(ms);
        return (
            d.getFullYear() + "-" + pad(d.getMonth() + 1, 2) + "-" + pad(d.getDate(), 2) + " " +
            clock(ms)
        );
    }

    function emptyStore() {
        return {runs: [], rows: [], run: null, first_seq: null, last_seq: null, y_range: null};
    }

    function finite(x) {
        return typeof x === "number" && isFinite(x);
    }

    function rank(store, run) {
        var i = store.runs.indexOf(run);
        return i === -1 ? store.runs.length : i;
    }

    function compareRows(store) {
        return function (a, b) {
            return rank(store, a.run) - rank(store, b.run) || a.seq - b.seq;
        };
    }

    /** Seqs the current run's part of the window must hold: [lo, hi], or null if unknown. */
    function neededRange(store, windowSize) {
        if (store.run === null || !finite(store.last_seq)) {
            return null;
        }
        var lo = store.last_seq - windowSize + 1;
        if (finite(store.first_seq)) {
            lo = Math.max(lo, store.first_seq);
        }
        return [lo, store.last_seq];
    }

    /** The first missing seq of the current run's window, or null when it is whole. */
    function firstHole(store, windowSize) {
        var range = neededRange(store, windowSize);
        if (!range) {
            return null;
        }
        var have = {};
        store.rows.forEach(function (r) {
            if (r.run === store.run) {
                have[r.seq] = true;
            }
        });
        for (var s = range[0]; s <= range[1]; s++) {
            if (!have[s]) {
                return s;
            }
        }
        return null;
    }

    /** Seq after which the bridge must send everything for our window to be whole. */
    function resumeSeq(store, windowSize) {
        var hole = firstHole(store, windowSize);
        if (hole !== null) {
            return hole - 1;
        }
        var best = null;
        store.rows.forEach(function (r) {
            if (r.run === store.run && (best === null || r.seq > best)) {
                best = r.seq;
            }
        });
        return best;
    }

    /**
     * The bridge URL the page connects to. `configured` is config.ws_url: absolute ws:// or
     * wss:// URLs are used as they are; a path is resolved against `loc` (the page's location):
     * the page's host and port, wss when the page is https. With `port` (no public URL
     * configured) the bridge is on that port of the page's host name, plain ws.
     */
    function resolveWsUrl(configured, port, loc) {
        if (/^wss?:\/\//i.test(configured)) {
            return configured;
        }
        var u = new URL(configured, loc.href);
        if (port) {
            return "ws://" + u.hostname + ":" + port + u.pathname + u.search;
        }
        return (u.protocol === "https:" ? "wss://" : "ws://") + u.host + u.pathname + u.search;
    }

    function wsBase(config) {
        if (S.wsBase === null) {
            S.wsBase = resolveWsUrl(config.ws_url, config.ws_port, window.location);
        }
        return S.wsBase;
    }

    /**
     * Why the bridge refuses this page, or "" when `origin` (the page's location.origin) is in
     * `allowed` (config.allowed_origins, the bridge's HRDASH_ALLOWED_ORIGINS) or it holds "*".
     * The browser cannot read a refused handshake's status (403), but it can tell this.
     */
    function originRefusal(origin, allowed) {
        if (!Array.isArray(allowed) || allowed.indexOf("*") !== -1 ||
            allowed.indexOf(origin) !== -1) {
            return "";
        }
        return "The bridge refuses this page's origin, " + origin + ". Add exactly that " +
            "(scheme, host and port) to HRDASH_ALLOWED_ORIGINS and restart hrdash; it is now " +
            (allowed.length ? allowed.join(", ") : "empty") + ".";
    }

    function reconnectUrl(base, store) {
        var parts = [];
        if (S.run !== null && S.resumeSeq !== null) {
            parts.push("since=" + encodeURIComponent(S.resumeSeq));
            parts.push("run=" + encodeURIComponent(S.run));
        }
        parts.push("n=" + S.nonce);
        return base + (base.indexOf("?") === -1 ? "?" : "&") + parts.join("&");
    }

    /** The base y range, widened (to multiples of 10, Y_PAD of room) only around the window's
     * readings that lie outside it. */
    function yRange(rows, base) {
        var lo = base[0];
        var hi = base[1];
        rows.forEach(function (r) {
            if (r.bpm < base[0]) {
                lo = Math.min(lo, Math.floor((r.bpm - Y_PAD) / 10) * 10);
            }
            if (r.bpm > base[1]) {
                hi = Math.max(hi, Math.ceil((r.bpm + Y_PAD) / 10) * 10);
            }
        });
        return [lo, hi];
    }

    /**
     * Merge a readings frame into the store (a new object; the old one is not modified).
     * Returns {store, added}: added = the readings new to the window, in window order.
     */
    function merge(store, frame, windowSize) {
        var run = typeof frame.run === "string" || typeof frame.run === "number"
            ? String(frame.run) : (store.run === null ? "" : store.run);
        var next = {
            runs: store.runs.slice(),
            rows: store.rows.slice(),
            run: store.run,
            first_seq: store.first_seq,
            last_seq: store.last_seq,
            y_range: store.y_range,
        };
        if (run !== next.run && next.runs.indexOf(run) === -1) {
            // A new bridge run (restart): keep the old rows, stop gap-checking them.
            next.runs.push(run);
            next.run = run;
            next.first_seq = null;
            next.last_seq = null;
        }
        var seen = {};
        next.rows.forEach(function (r) {
            seen[r.id] = true;
        });
        var fresh = {};
        var maxSeq = null;
        (Array.isArray(frame.readings) ? frame.readings : []).forEach(function (r) {
            if (!r || !finite(r.seq) || !finite(r.time) || !finite(r.bpm)) {
                return;
            }
            var id = run + "-" + r.seq;
            if (maxSeq === null || r.seq > maxSeq) {
                maxSeq = r.seq;
            }
            if (seen[id]) {
                return;
            }
            seen[id] = true;
            fresh[id] = true;
            next.rows.push({id: id, run: run, seq: r.seq, time: r.time, bpm: r.bpm});
        });
        next.rows.sort(compareRows(next));
        if (next.rows.length > windowSize) {
            next.rows = next.rows.slice(next.rows.length - windowSize);
        }
        // Forget runs that no longer have rows (except the current one).
        next.runs = next.runs.filter(function (name) {
            return name === next.run || next.rows.some(function (r) {
                return r.run === name;
            });
        });
        if (run === next.run) {
            bounds(next, frame, maxSeq);
        }
        var added = next.rows.filter(function (r) {
            return fresh[r.id];
        });
        return {store: next, added: added};
    }

    /** Take first_seq/last_seq of a frame of the current run into the store. */
    function bounds(store, frame, maxSeq) {
        if (finite(frame.first_seq)) {
            store.first_seq = frame.first_seq;
        }
        var last = finite(frame.last_seq) ? frame.last_seq : maxSeq;
        if (finite(last) && (!finite(store.last_seq) || last > store.last_seq)) {
            store.last_seq = last;
        }
    }

    function normalise(store) {
        if (!store || !Array.isArray(store.rows) || !Array.isArray(store.runs)) {
            return emptyStore();
        }
        return store;
    }

    function setProps(id, props) {
        window.dash_clientside.set_props(id, props);
    }

    function setBadge(config, text, cls, title) {
        var key = text + "|" + cls;
        if (S.badge === key) {
            return;
        }
        S.badge = key;
        setProps(config.ids.status, {children: text, className: "hr-badge " + cls, title: title || ""});
    }

    function reconnect(config) {
        if (S.timer !== null) {
            clearTimeout(S.timer);
            S.timer = null;
        }
        S.nonce += 1;
        S.connectStartedAt = now();
        S.openedAt = 0;
        setProps(config.ids.ws, {url: reconnectUrl(wsBase(config))});
    }

    function scheduleReconnect(config) {
        if (S.timer !== null) {
            return;
        }
        var delay = S.backoff;
        S.backoff = Math.min(S.backoff * 2, BACKOFF_MAX_MS);
        S.timer = setTimeout(function () {
            S.timer = null;
            reconnect(config);
        }, delay);
    }

    function stats(rows) {
        if (!rows.length) {
            return ["–", "–", "–"];
        }
        var lo = Infinity;
        var hi = -Infinity;
        var sum = 0;
        rows.forEach(function (r) {
            lo = Math.min(lo, r.bpm);
            hi = Math.max(hi, r.bpm);
            sum += r.bpm;
        });
        return [String(lo), String(Math.round(sum / rows.length)), String(hi)];
    }

    /** The chart's gd (Plotly's div) when it already shows exactly `rows`, else null. */
    function chartInSync(config, rows) {
        var host = document.getElementById(config.ids.chart);
        var gd = host && host.querySelector(".js-plotly-plot");
        var trace = gd && gd.data && gd.data[0];
        if (!trace || !trace.x || trace.x.length !== rows.length || !rows.length) {
            return false;
        }
        return trace.x[trace.x.length - 1] === plotTime(rows[rows.length - 1].time);
    }

    /** [extendData, figurePatch]: one of them is no_update. */
    function chartUpdate(config, before, after, added) {
        var noUpdate = window.dash_clientside.no_update;
        var base = config.y_range || [40, 160];
        var range = yRange(after.rows, base);
        var sameRange = before.y_range && before.y_range[0] === range[0] &&
            before.y_range[1] === range[1];
        after.y_range = range;
        var lastBefore = before.rows.length ? before.rows[before.rows.length - 1] : null;
        var appendOnly = lastBefore !== null && added.length > 0 && after.rows.some(function (r) {
            return r.id === lastBefore.id;
        }) && added.every(function (r) {
            return compareRows(after)(r, lastBefore) > 0;
        });
        if (sameRange && appendOnly && chartInSync(config, before.rows)) {
            return [[{
                x: [added.map(function (r) {
                    return plotTime(r.time);
                })],
                y: [added.map(function (r) {
                    return r.bpm;
                })],
            }, [0], config.window], noUpdate];
        }
        return [noUpdate, chartPatch(after.rows, range)];
    }

    /** A figure Patch that sets the whole trace and the y range. */
    function chartPatch(rows, range) {
        var patch = new window.dash_clientside.Patch();
        patch.assign(["data", 0, "x"], rows.map(function (r) {
            return plotTime(r.time);
        }));
        patch.assign(["data", 0, "y"], rows.map(function (r) {
            return r.bpm;
        }));
        patch.assign(["layout", "yaxis", "range"], range);
        return patch.build();
    }

    /**
     * Write the current card's text at once, from the message handler, before Dash renders this
     * callback's outputs (the table and chart render in the same pass and would hold the card
     * back). The same values are also returned as the card's Dash props, so React's later render
     * writes identical text and a re-render never shows an older value.
     */
    function writeCard(config, bpm, timeText) {
        [[config.ids.current_bpm, bpm], [config.ids.current_time, timeText]].forEach(function (p) {
            var el = p[0] ? document.getElementById(p[0]) : null;
            if (el && el.textContent !== p[1]) {
                el.textContent = p[1];
            }
        });
    }

    function tableRows(rows, order) {
        var out = rows.map(function (r) {
            return {id: r.id, seq: r.seq, time: r.time, bpm: r.bpm};
        });
        return order === "newest-first" ? out.reverse() : out;
    }

    /**
     * The status badge (pure): {text, cls, title, age, stale}.
     *   status  the last status frame, or null
     *   store   the window
     *   sock    {readyState, everOpen, lastReadingAt, refused}: the socket's readyState; whether a
     *           socket was opened or asked for before; when the newest reading arrived (ms, 0 =
     *           never); refused: originRefusal's message while the bridge refuses the page, or ""
     *   t       now, on lastReadingAt's clock (ms)
     * age: seconds since the newest reading arrived (null: unknown); stale: age over stale_after.
     */
    function badgeState(status, store, sock, t, config) {
        var rows = normalise(store).rows;
        var rs = sock.readyState;
        var newest = rows.length ? rows[rows.length - 1] : null;
        var age = newest && sock.lastReadingAt ? (t - sock.lastReadingAt) / 1000 : null;
        var stale = newest !== null && (age === null || age > config.stale_after);
        var upstream = status && status.upstream;
        var text;
        var cls;
        var title = status && status.detail ? String(status.detail) : "";
        if (sock.refused) {
            text = "Origin refused"; // sock.refused: originRefusal's message
            cls = "hr-badge--down";
            title = sock.refused;
        } else if (rs !== WS_OPEN) {
            var everOpen = sock.everOpen || rows.length > 0;
            text = everOpen || rs === WS_CLOSED ? "Reconnecting…" : "Connecting…";
            cls = rs === WS_CLOSED || everOpen ? "hr-badge--reconnecting" : "hr-badge--connecting";
        } else if (status && status.relay === "down") {
            text = "Relay down"; // Redis unreachable or no ingest: not the patient's service
            cls = "hr-badge--down";
        } else if (upstream === "down" || (upstream === "connecting" && title)) {
            text = "Upstream down";
            cls = "hr-badge--down";
        } else if (stale) {
            text = "Stale · " + (age === null ? "?" : age.toFixed(1)) + " s";
            cls = "hr-badge--stale";
        } else if (newest && upstream !== "connecting") {
            text = "Live";
            cls = "hr-badge--live";
        } else {
            text = "Connecting…";
            cls = "hr-badge--connecting";
        }
        return {text: text, cls: cls, title: title, age: age, stale: stale};
    }

    /** Hand a status frame / socket state to the Source panel (assets/source_panel.js); a fault
     * there must never break the live path. */
    function sourcePanel(method, arg, config) {
        var panel = window.hrdashSource;
        if (!panel) {
            return;
        }
        try {
            panel[method](arg, config);
        } catch (e) {
            if (window.console) {
                window.console.warn("hrdash source panel:", e);
            }
        }
    }

    /**
     * Run fn once the browser has painted the next frame (a task after that frame's
     * requestAnimationFrame), or after AFTER_PAINT_MAX_MS if frames are throttled; at once in a
     * hidden tab, which paints nothing.
     */
    function afterPaint(fn) {
        if (document.hidden) {
            fn();
            return;
        }
        var done = false;
        function run() {
            if (!done) {
                done = true;
                fn();
            }
        }
        requestAnimationFrame(function () {
            setTimeout(run, 0);
        });
        setTimeout(run, AFTER_PAINT_MAX_MS);
    }

    /**
     * The Dash callback for a socket message. The card is written at once (writeCard, in
     * handle_message); when it changed, the outputs (store, table, chart, stats, and the card's
     * props with the same values) are handed to Dash only after the next paint, so that the card
     * reaches the screen before the table and chart render (measured in benchmarks/: the card is
     * painted ~40 ms sooner, the table and chart one frame later).
     *
     * Dash drops a callback's pending result when the same callback is requested again, so a
     * message that arrives while a result waits for its paint takes that result over: it merges
     * into the pending store, every output it does not set itself comes from the pending one, and
     * it is returned at once (a result waits for a paint at most once). The first window (the
     * snapshot on load) is returned at once too.
     */
    function on_message(message, store, config) {
        var nu = window.dash_clientside.no_update;
        var carried = S.pendingOut;
        S.pendingOut = null;
        var base = carried && carried[0] !== nu ? carried[0] : store;
        var out = handle_message(message, base, config);
        if (carried) {
            carryOver(carried, out, config);
        }
        var shown = normalise(base).rows.length > 0;
        if (out[4] === nu || carried || !shown) {
            // Nothing to paint first (the card did not change), a result already waited once
            // (a busy page, e.g. loading, must not keep the table waiting), or the first window.
            return out;
        }
        S.pendingOut = out;
        return new Promise(function (resolve) {
            afterPaint(function () {
                if (S.pendingOut === out) {
                    S.pendingOut = null;
                }
                resolve(out);
            });
        });
    }

    /** Fill the outputs `out` leaves unset from `carried` (a result Dash will drop). */
    function carryOver(carried, out, config) {
        var nu = window.dash_clientside.no_update;
        var chartCarried = carried[2] !== nu || carried[3] !== nu;
        var chartNew = out[2] !== nu || out[3] !== nu;
        if (chartCarried && chartNew) {
            // The new update was computed against a chart that lacks the carried one: redraw.
            var st = normalise(out[0] !== nu ? out[0] : carried[0]);
            out[2] = nu;
            out[3] = chartPatch(st.rows, st.y_range || yRange(st.rows, config.y_range || [40, 160]));
        } else if (chartCarried) {
            out[2] = carried[2];
            out[3] = carried[3];
        }
        [0, 1, 4, 5, 6, 7, 8, 9].forEach(function (i) {
            if (out[i] === nu) {
                out[i] = carried[i];
            }
        });
    }

    function handle_message(message, store, config) {
        var nu = window.dash_clientside.no_update;
        var out = [nu, nu, nu, nu, nu, nu, nu, nu, nu, nu];
        if (!message || typeof message.data !== "string" || !config) {
            return out;
        }
        var t = now();
        S.lastFrameAt = t;
        S.backoff = BACKOFF_MIN_MS;
        var frame;
        try {
            frame = JSON.parse(message.data);
        } catch (e) {
            return out;
        }
        if (!frame || typeof frame !== "object") {
            return out;
        }
        var before = normalise(store);
        var after;
        if (frame.type === "readings") {
            var merged = merge(before, frame, config.window);
            after = merged.store;
            var newest = after.rows.length ? after.rows[after.rows.length - 1] : null;
            var oldNewest = before.rows.length ? before.rows[before.rows.length - 1] : null;
            if (newest && (!oldNewest || newest.id !== oldNewest.id)) {
                S.lastReadingAt = t;
            }
            if (merged.added.length) {
                S.timeText = clock(newest.time);
                writeCard(config, String(newest.bpm), S.timeText);
                var chart = chartUpdate(config, before, after, merged.added);
                var s = stats(after.rows);
                out = [
                    after,
                    tableRows(after.rows, config.order),
                    chart[0],
                    chart[1],
                    String(newest.bpm),
                    S.timeText,
                    s[0],
                    s[1],
                    s[2],
                    nu,
                ];
            } else {
                out[0] = after;
            }
        } else if (frame.type === "status") {
            S.status = frame;
            sourcePanel("onStatus", frame, config);
            after = {
                runs: before.runs.slice(),
                rows: before.rows,
                run: before.run,
                first_seq: before.first_seq,
                last_seq: before.last_seq,
                y_range: before.y_range,
            };
            var run = frame.run === undefined || frame.run === null ? after.run : String(frame.run);
            if (run !== null && run !== after.run && after.runs.indexOf(run) === -1) {
                after.runs.push(run); // restarted bridge announced before its readings
                after.run = run;
                after.first_seq = null;
                after.last_seq = null;
            }
            if (run === after.run) {
                bounds(after, frame, null);
            }
            out[0] = after;
        } else {
            return out; // unknown type: ignore
        }
        S.run = after.run;
        S.resumeSeq = resumeSeq(after, config.window);
        var hole = firstHole(after, config.window);
        if (hole !== null && S.readyState === WS_OPEN && t - S.lastResendAt >= RESEND_EVERY_MS) {
            S.lastResendAt = t;
            S.nonce += 1;
            out[9] = JSON.stringify({type: "resend", since: hole - 1, run: after.run, nonce: S.nonce});
        }
        return out;
    }

    /** The socket's first url, as soon as the page has its config. */
    function connect(config) {
        if (!config) {
            return window.dash_clientside.no_update;
        }
        S.connectStartedAt = now();
        return wsBase(config);
    }

    /** Show or hide the line that says the bridge refuses this page's origin. */
    function showAlert(config, text) {
        if (S.alert === text || !config.ids.origin_alert) {
            return;
        }
        S.alert = text;
        setProps(config.ids.origin_alert, {children: text, hidden: !text});
    }

    function on_state(state, store, config) {
        if (!state || !config) {
            return;
        }
        var t = now();
        S.readyState = state.readyState;
        sourcePanel("onSocketState", state.readyState, config);
        if (state.readyState === WS_OPEN) {
            S.openedAt = t;
            S.closedUnopened = 0;
        } else if (state.readyState === WS_CLOSED) {
            S.closedUnopened += 1;
            if (!originRefusal(window.location.origin, config.allowed_origins)) {
                setBadge(config, "Reconnecting…", "hr-badge--reconnecting", "");
            }
            scheduleReconnect(config);
        } else {
            S.connectStartedAt = t;
        }
    }

    function on_tick(n, wsState, store, config) {
        var nu = window.dash_clientside.no_update;
        if (!config) {
            return [nu, nu, nu, nu];
        }
        var t = now();
        var rs = wsState ? wsState.readyState : undefined;
        if (rs !== undefined) {
            S.readyState = rs;
        }
        // Watchdogs: a socket can look open and be dead (no TCP reset), or hang while connecting.
        if (rs === WS_OPEN && S.openedAt && t - Math.max(S.lastFrameAt, S.openedAt) > SILENT_SOCKET_MS) {
            reconnect(config);
            rs = 0;
        } else if (rs === 0 && S.connectStartedAt && t - S.connectStartedAt > CONNECT_TIMEOUT_MS) {
            reconnect(config);
        } else if (rs === WS_CLOSED && S.timer === null) {
            scheduleReconnect(config);
        }

        store = normalise(store);
        var newest = store.rows.length ? store.rows[store.rows.length - 1] : null;
        var sock = {
            readyState: rs,
            everOpen: S.nonce > 0 || S.openedAt > 0,
            lastReadingAt: S.lastReadingAt,
            // The handshake fails and the bridge's allowed origins do not name this page's origin.
            refused: rs !== WS_OPEN && S.closedUnopened > 0
                ? originRefusal(window.location.origin, config.allowed_origins) : "",
        };
        showAlert(config, sock.refused);
        var badge = badgeState(S.status, store, sock, t, config);
        var age = badge.age;
        var stale = badge.stale;
        var title = badge.title;
        var badgeKey = badge.text + "|" + badge.cls;
        var badgeText = nu;
        var badgeClass = nu;
        if (S.badge !== badgeKey) {
            S.badge = badgeKey;
            badgeText = badge.text;
            badgeClass = "hr-badge " + badge.cls;
        }
        if (title !== S.badgeTitle) {
            S.badgeTitle = title;
            setProps(config.ids.status, {title: title});
        }

        var card = "hr-card hr-current" + (!newest ? " hr-current--empty" : stale ? " hr-current--stale" : "");
        var timeText = nu;
        if (stale) {
            var ago = age === null ? "a while" : Math.floor(age) + " s";
            var label = "Last reading " + ago + " ago · " + clock(newest.time);
            if (label !== S.timeText) {
                S.timeText = label;
                timeText = label;
            }
        }
        return [badgeText, badgeClass, card, timeText];
    }

    // Merge into the existing objects: the renderer keeps set_props, Patch, no_update on
    // window.dash_clientside, and other assets (station.js) add their functions to the namespace
    // in whatever order the assets load.
    window.dash_clientside = window.dash_clientside || {};
    var ns = (window.dash_clientside.hrdash = window.dash_clientside.hrdash || {});
    ns.connect = connect;
    ns.on_message = on_message;
    ns.on_state = on_state;
    ns.on_tick = on_tick;

    // AG Grid valueFormatter: {"function": "hrdashTime(params.value)"}.
    window.dashAgGridFunctions = window.dashAgGridFunctions || {};
    window.dashAgGridFunctions.hrdashTime = clock;

    // Pure helpers (and the per-tab state S), for tests and the console.
    window.hrdashCore = {
        clock: clock,
        plotTime: plotTime,
        emptyStore: emptyStore,
        normalise: normalise,
        merge: merge,
        bounds: bounds,
        neededRange: neededRange,
        handleMessage: handle_message,
        firstHole: firstHole,
        resumeSeq: resumeSeq,
        reconnectUrl: reconnectUrl,
        yRange: yRange,
        stats: stats,
        chartUpdate: chartUpdate,
        tableRows: tableRows,
        badgeState: badgeState,
        resolveWsUrl: resolveWsUrl,
        originRefusal: originRefusal,
        // The socket's timings, shared with the station's socket (assets/station.js).
        timing: {
            backoffMinMs: BACKOFF_MIN_MS,
            backoffMaxMs: BACKOFF_MAX_MS,
            silentSocketMs: SILENT_SOCKET_MS,
            connectTimeoutMs: CONNECT_TIMEOUT_MS,
        },
        state: S,
    };
})();
