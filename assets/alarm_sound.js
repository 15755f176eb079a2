/*
 * hrdash — the alarm sound (Web Audio) and the sound control `hr-audio`, on any page that has the
 * control (hrdash.layout.audio_control builds it; the station and the monitor place it).
 *
 *   window.hrdashAudio = {update(frameLike), setSender(fn), enabled(), pattern(priority), ...}
 *
 * update({sounding, audio_paused_until, now}) — called by the page's client on every frame that
 *   carries the alarm state (station frames, alarm frames). `sounding` ("high" | "medium" |
 *   "low" | null; missing = null) is what the bridge says must sound now (acknowledged and
 *   paused alarms are not sounding; a higher priority sounds through a pause): its pattern plays,
 *   repeated, for as long as it stays the same; another priority replaces it at once, null stops
 *   every scheduled pulse at once. `audio_paused_until` (Unix ms on the bridge's clock, or null)
 *   drives the countdown; the remaining time is taken against the frame's own `now` (the
 *   bridge's clock when it sent the frame: station frames carry it), or against the browser's
 *   clock when the frame has none, then counted down on the browser's monotonic clock.
 * setSender(fn) — how the "Pause audio" button reaches the bridge: fn({"type": "audio_pause",
 *   "seconds": S}) sends it on the page's own socket and returns false when it could not.
 * enabled() — the AudioContext is running (browsers block audio until a user gesture: until
 *   then the control says "Alarm sound is off — click to enable"; any click or key on the page
 *   enables it; nothing is remembered across reloads, the next page asks again).
 * pattern(priority) — the pulse schedule of a priority (null for anything else):
 *   {priority, hz, repeat_ms, pulses: [{at, ms}]}, `at` from the start of the burst.
 * error(text) — show a refusal of the pause (an error frame) in the control, briefly.
 * stats() — what is playing and what was scheduled (tests, the console).
 *
 * Patterns (IEC 60601-1-8 style; square tone through a low-pass, soft edges): high priority a
 * burst of 10 pulses, 3 + 2, a pause, 3 + 2, every 5 s; medium 3 pulses every 8 s; low 1 pulse
 * every 20 s. Bursts are scheduled on the AudioContext's clock up to HORIZON_S ahead (a
 * throttled timer in a background tab does not break the rhythm) and every scheduled pulse is
 * cancelled when the sounding priority changes.
 *
 * The control's ids, texts and the pause length come from the control itself (its data-config,
 * written by audio_control from Python's constants); upstream text is only ever set as text.
 */
(function () {
    "use strict";

    var ROOT_ID = "hr-audio"; // the control (the one id this file knows; the rest is its config)
    var HORIZON_S = 10; // bursts are scheduled this far ahead on the audio clock
    var PUMP_MS = 1000; // ... topped up this often
    var LEAD_S = 0.05; // the first pulse of a new pattern starts this long after now
    var RAMP_S = 0.012; // attack and release of a pulse (no clicks)
    var LEVEL = 0.16; // the tone's gain
    var LOWPASS_HZ = 3000; // square tone, harmonics above this softened
    var COUNTDOWN_MS = 250; // the countdown's refresh while a pause runs
    var MESSAGE_MS = 6000; // an error stays shown this long

    /** One burst's pulses: groups of pulses `ms` long, `gap` ms apart, `pause` ms between groups. */
    function pulses(groups, ms, gap, pauses) {
        var out = [];
        var at = 0;
        groups.forEach(function (n, g) {
            if (g > 0) {
                at += pauses[g - 1];
            }
            for (var i = 0; i < n; i++) {
                if (i > 0) {
                    at += gap;
                }
                out.push({at: at, ms: ms});
                at += ms;
            }
        });
        return out;
    }

    // IEC 60601-1-8 high: pulse 75-200 ms, spacing 50-125 ms, "x x x _ x x ... x x x _ x x"
    // (the _ a missing pulse: spacing + pulse + spacing), 10 pulses, burst every 2.5-15 s.
    // Medium: 3 pulses 125-250 ms, spacing 125-250 ms, every 2.5-30 s. Low: 1 pulse.
    var PATTERNS = {
        high: {hz: 660, repeat_ms: 5000, pulses: pulses([3, 2, 3, 2], 150, 100, [350, 600, 350])},
        medium: {hz: 587, repeat_ms: 8000, pulses: pulses([3], 200, 150, [])},
        low: {hz: 523, repeat_ms: 20000, pulses: pulses([1], 250, 0, [])},
    };

    var A = {
        ctx: null, // the AudioContext (created on the first update or gesture)
        out: null, // the graph's input (low-pass → gain → destination)
        unsupported: false, // no Web Audio in this browser
        sounding: null, // what the bridge says must sound
        playing: null, // the pattern being scheduled (sounding, while the context runs)
        nextAt: 0, // audio time of the next burst to schedule
        pump: null, // the timer topping up the schedule
        nodes: [], // scheduled pulses not yet ended: {osc, gain}
        bursts: 0, // bursts scheduled
        pulses: 0, // pulses scheduled
        cancelled: 0, // pulses stopped before their end
        updates: 0,
        sender: null,
        pauseEnd: null, // performance.now() at which the running pause ends (null: none)
        countdown: null, // its timer
        message: null, // the error's timer
        shown: "", // the control's last written state (key)
    };

    // A previous copy on the page (the file evaluated again) stops its sound and timers.
    if (window.hrdashAudio && typeof window.hrdashAudio.dispose === "function") {
        window.hrdashAudio.dispose();
    }

    function finite(x) {
        return typeof x === "number" && isFinite(x);
    }

    function pattern(priority) {
        var p = Object.prototype.hasOwnProperty.call(PATTERNS, priority) ? PATTERNS[priority] : null;
        if (!p) {
            return null;
        }
        return {
            priority: priority,
            hz: p.hz,
            repeat_ms: p.repeat_ms,
            pulses: p.pulses.map(function (x) {
                return {at: x.at, ms: x.ms};
            }),
        };
    }

    // -- the control ---------------------------------------------------------------------------

    var configs = new WeakMap(); // control element → its parsed data-config

    function root() {
        return document.getElementById(ROOT_ID);
    }

    function configOf(el) {
        var c = configs.get(el);
        if (c === undefined) {
            try {
                c = JSON.parse(el.getAttribute("data-config") || "{}");
            } catch (e) {
                c = {};
            }
            c.ids = c.ids || {};
            c.text = c.text || {};
            configs.set(el, c);
        }
        return c;
    }

    function part(el, name) {
        var id = configOf(el).ids[name];
        return id ? document.getElementById(id) : null;
    }

    /** "1:43" for 103 s (seconds rounded up: 0:01 until the very end). */
    function clock(ms) {
        var s = Math.max(0, Math.ceil(ms / 1000));
        var sec = s % 60;
        return Math.floor(s / 60) + ":" + (sec < 10 ? "0" : "") + sec;
    }

    function soundState() {
        if (A.unsupported) {
            return "unsupported";
        }
        return enabled() ? "on" : "off";
    }

    function remainingMs() {
        return A.pauseEnd === null ? 0 : Math.max(0, A.pauseEnd - performance.now());
    }

    /** Write the control (whatever changed): sound off/on, the countdown. */
    function render() {
        var el = root();
        if (!el) {
            return;
        }
        var c = configOf(el);
        var sound = soundState();
        var left = remainingMs();
        var countdown = left > 0 ? (c.text.paused || "Audio paused") + " " + clock(left) : "";
        var key = sound + "|" + countdown + "|" + (A.sounding || "none");
        if (key === A.shown && el.getAttribute("data-sound") === sound) {
            return;
        }
        A.shown = key;
        el.setAttribute("data-sound", sound);
        el.setAttribute("data-sounding", A.sounding || "none");
        var enable = part(el, "enable");
        if (enable) {
            var text = c.text[sound] || sound;
            if (enable.textContent !== text) {
                enable.textContent = text;
            }
            enable.setAttribute("aria-pressed", sound === "on" ? "true" : "false");
        }
        var cd = part(el, "countdown");
        if (cd) {
            if (cd.textContent !== countdown) {
                cd.textContent = countdown;
            }
            cd.hidden = !countdown;
        }
    }

    function stopCountdown() {
        if (A.countdown !== null) {
            clearInterval(A.countdown);
            A.countdown = null;
        }
    }

    function countdownTick() {
        if (remainingMs() <= 0) {
            A.pauseEnd = null;
            stopCountdown();
        }
        render();
    }

    function showMessage(text) {
        var el = root();
        var box = el ? part(el, "message") : null;
        if (!box) {
            return;
        }
        box.textContent = String(text);
        box.hidden = false;
        if (A.message !== null) {
            clearTimeout(A.message);
        }
        A.message = setTimeout(function () {
            A.message = null;
            box.hidden = true;
            box.textContent = "";
        }, MESSAGE_MS);
    }

    // -- the sound -----------------------------------------------------------------------------

    function enabled() {
        return A.ctx !== null && A.ctx.state === "running";
    }

    /** The AudioContext (made once; suspended until a gesture unless autoplay is allowed). */
    function context() {
        if (A.ctx !== null || A.unsupported) {
            return A.ctx;
        }
        var Ctor = window.AudioContext || window.webkitAudioContext;
        if (typeof Ctor !== "function") {
            A.unsupported = true;
            return null;
        }
        var ctx = new Ctor();
        var filter = ctx.createBiquadFilter();
        filter.type = "lowpass";
        filter.frequency.value = LOWPASS_HZ;
        var gain = ctx.createGain();
        gain.gain.value = LEVEL;
        filter.connect(gain);
        gain.connect(ctx.destination);
        A.ctx = ctx;
        A.out = filter;
        ctx.onstatechange = function () {
            if (A.ctx === ctx) {
                sync();
                render();
            }
        };
        return ctx;
    }

    /** One pulse at audio time `at` for `ms`, in the pattern's tone. */
    function pulse(hz, at, ms) {
        var ctx = A.ctx;
        var osc = ctx.createOscillator();
        var env = ctx.createGain();
        var end = at + ms / 1000;
        osc.type = "square";
        osc.frequency.value = hz;
        env.gain.setValueAtTime(0, at);
        env.gain.linearRampToValueAtTime(1, at + RAMP_S);
        env.gain.setValueAtTime(1, end - RAMP_S);
        env.gain.linearRampToValueAtTime(0, end);
        osc.connect(env);
        env.connect(A.out);
        var node = {osc: osc, env: env};
        A.nodes.push(node);
        osc.onended = function () {
            var i = A.nodes.indexOf(node);
            if (i !== -1) {
                A.nodes.splice(i, 1);
            }
            env.disconnect();
        };
        osc.start(at);
        osc.stop(end);
        A.pulses += 1;
    }

    /** Schedule bursts of the playing pattern up to HORIZON_S ahead, and come back later. */
    function top() {
        A.pump = null;
        var p = PATTERNS[A.playing];
        if (!p || !enabled()) {
            return;
        }
        var now = A.ctx.currentTime;
        if (A.nextAt < now + LEAD_S) {
            A.nextAt = now + LEAD_S; // the first burst, or the timer was held up past one
        }
        while (A.nextAt < now + HORIZON_S) {
            var at = A.nextAt;
            p.pulses.forEach(function (x) {
                pulse(p.hz, at + x.at / 1000, x.ms);
            });
            A.bursts += 1;
            A.nextAt += p.repeat_ms / 1000;
        }
        A.pump = setTimeout(top, PUMP_MS);
    }

    /** Stop every scheduled pulse now (those not started never will). */
    function silence() {
        if (A.pump !== null) {
            clearTimeout(A.pump);
            A.pump = null;
        }
        var nodes = A.nodes;
        A.nodes = [];
        nodes.forEach(function (n) {
            try {
                n.osc.onended = null;
                n.osc.stop();
            } catch (e) {
                // already stopped
            }
            n.env.disconnect();
            A.cancelled += 1;
        });
        A.playing = null;
    }

    /** Play what is sounding (if the context runs), replacing anything else at once. */
    function sync() {
        var want = enabled() ? A.sounding : null;
        if (want === A.playing) {
            return;
        }
        silence();
        if (want !== null) {
            A.playing = want;
            A.nextAt = 0;
            top();
        }
    }

    // -- the API -------------------------------------------------------------------------------

    function update(frame) {
        if (!frame || typeof frame !== "object") {
            return;
        }
        A.updates += 1;
        var s = frame.sounding;
        A.sounding = Object.prototype.hasOwnProperty.call(PATTERNS, s) ? s : null;
        var until = frame.audio_paused_until;
        if (finite(until)) {
            var server = finite(frame.now) ? frame.now : Date.now();
            var left = until - server;
            A.pauseEnd = left > 0 ? performance.now() + left : null;
        } else {
            A.pauseEnd = null;
        }
        if (A.pauseEnd !== null && A.countdown === null) {
            A.countdown = setInterval(countdownTick, COUNTDOWN_MS);
        } else if (A.pauseEnd === null) {
            stopCountdown();
        }
        context();
        sync();
        render();
    }

    function setSender(fn) {
        A.sender = typeof fn === "function" ? fn : null;
        render();
    }

    /** A user gesture anywhere on the page: the moment a browser lets audio start. */
    function onGesture() {
        var ctx = context();
        if (ctx && ctx.state !== "running" && typeof ctx.resume === "function") {
            ctx.resume().then(function () {
                sync();
                render();
            }, function () {
                render();
            });
        }
    }

    function onClick(event) {
        onGesture();
        var el = root();
        var target = event.target;
        if (!el || !target || typeof target.closest !== "function") {
            return;
        }
        var pause = part(el, "pause");
        if (pause && target.closest("#" + pause.id) === pause) {
            var seconds = configOf(el).pause_seconds;
            var sent = A.sender ? A.sender({type: "audio_pause", seconds: seconds}) : false;
            if (sent === false) {
                showMessage(configOf(el).text.not_sent || "Not connected");
            }
        }
    }

    document.addEventListener("click", onClick, true);
    document.addEventListener("keydown", onGesture, true);

    function dispose() {
        document.removeEventListener("click", onClick, true);
        document.removeEventListener("keydown", onGesture, true);
        silence();
        stopCountdown();
        if (A.ctx && typeof A.ctx.close === "function") {
            A.ctx.onstatechange = null;
            A.ctx.close();
        }
        A.ctx = null;
    }

    window.hrdashAudio = {
        update: update,
        setSender: setSender,
        enabled: enabled,
        pattern: pattern,
        error: showMessage,
        clock: clock,
        dispose: dispose,
        stats: function () {
            return {
                sounding: A.sounding,
                playing: A.playing,
                context: A.ctx ? A.ctx.state : null,
                bursts: A.bursts,
                pulses: A.pulses,
                scheduled: A.nodes.length,
                cancelled: A.cancelled,
                updates: A.updates,
                pause_left_ms: remainingMs(),
                sender: A.sender !== null,
            };
        },
    };
})();
