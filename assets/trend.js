/*
 * hrdash — the monitor's Trend card (hrdash/callbacks/trend.py builds it): the patient's stored
 * history as a min–max band with the mean line, over 1 h / 8 h / 24 h or a custom range, and the
 * raw readings once zoomed in far enough.
 *
 * Wired as one clientside callback in window.dash_clientside.hrdash:
 *   trend_start(trendConfig, pageConfig)   the card mounted → bind it, load the default range
 * Everything after that happens here, without Dash: the page fetches the trend JSON from the Dash
 * server's history routes (relative to the app's URL prefix, pageConfig.prefix)
 *   GET <prefix>api/patients/<id>/trend?range=1h|8h|24h | ?from=MS&to=MS [&width=MS] [&raw=1]
 *   → {"patient", "range", "from", "to", "width",
 *      "buckets": [{"t","min","mean","max","n"}...],        bucket starts, time order, ≤ 2000
 *      "readings": [{"t","bpm"}...] | null}                  raw=1 and ≤ 2000 in range
 * and draws with Plotly.react on the graph's own div (dcc.Graph's figure prop is never changed,
 * so Dash never redraws it): no figure goes through Dash's renderer, and the zoom events
 * (plotly_relayout) come from the same div. A failed request shows the server's one line in the
 * status line, as text.
 *
 * What is drawn (trace 0 the band, trace 1 the line; never more than max_points points each):
 *   buckets  a bar per bucket from its min to its max, [t, t + width) (a band that leaves gaps
 *            where there are no buckets: Plotly's tonexty fill joins across gaps), and the mean
 *            line through the buckets' middles with a null between buckets that are not
 *            neighbours (series(): the semantics of hrdash.trends.series), connectgaps off;
 *   raw      zoomed in, when the route sent the readings: the readings as a line, broken where
 *            two are more than raw_gap_ms apart; the band is left out.
 * Times are Unix ms; Plotly gets local wall-clock strings (hrdashCore.plotTime), as the live
 * chart does, and zoom ranges come back as such strings (parsePlotTime).
 *
 * Moving on: every refresh_ms while a 1 h / 8 h / 24 h range is shown and the tab is visible
 * (and at once when a hidden tab is shown again), the page asks for [start of its last bucket,
 * now) at the same width, replaces that bucket, appends the new ones and drops those that left
 * the range (mergeLive). "Now" is the server's:
 * the `to` of the last answer plus the time elapsed since on the browser's monotonic clock,
 * never the browser's wall clock. Zoomed in, the view stays where it is (the base keeps up
 * underneath); a double click goes back to it.
 *
 * The card tells tests and benchmarks what it shows: data-range (1h/8h/24h/custom), data-mode
 * (buckets/raw), data-from/data-to (the shown range, Unix ms), data-width, data-points, and
 * data-drawn, a count of draws, set once Plotly has drawn.
 */
(function () {
    "use strict";

    var API = "/api/patients/";
    var MARKERS_UP_TO = 200; // raw readings: markers on the line up to this many
    var THIN_LINE_ABOVE = 300; // buckets: the mean line is thinner above this many
    var TICK_SPACING_PX = 120; // at most one x tick label per this many pixels (phones)
    var WAIT_PLOT_MS = 30000; // the graph's first draw by dcc.Graph (plotly.js loads lazily)

    // Per-tab mutable state.
    var S = {
        config: null, // trend config store
        page: null, // page config store
        gd: null, // the graph's Plotly div
        base: null, // the range's trend: {range, from, to, width, buckets, receivedAt}
        zoom: null, // zoomed-in view: {from, to, width, buckets, readings}
        baseGen: 0, // bumped by every new range: answers for older ones are dropped
        zoomGen: 0,
        refreshing: false,
        timer: null,
        drawn: 0,
        bound: null, // the card element whose events are bound
    };

    function core() {
        return window.hrdashCore;
    }

    // -- pure helpers ---------------------------------------------------------------------------

    /**
     * Columns t, min, mean, max, n of time-sorted buckets, with a row of nulls wherever two
     * consecutive buckets are not neighbours (hrdash.trends.series, the same semantics).
     */
    function series(buckets, width) {
        var cols = {t: [], min: [], mean: [], max: [], n: []};
        var keys = ["t", "min", "mean", "max", "n"];
        var previous = null;
        buckets.forEach(function (b) {
            if (previous !== null && b.t - previous > width) {
                keys.forEach(function (k) {
                    cols[k].push(null);
                });
            }
            keys.forEach(function (k) {
                cols[k].push(b[k]);
            });
            previous = b.t;
        });
        return cols;
    }

    /** Readings [{t, bpm}] as columns t, bpm with a null where two are more than gapMs apart. */
    function rawSeries(readings, gapMs) {
        var cols = {t: [], bpm: []};
        var previous = null;
        readings.forEach(function (r) {
            if (previous !== null && r.t - previous > gapMs) {
                cols.t.push(null);
                cols.bpm.push(null);
            }
            cols.t.push(r.t);
            cols.bpm.push(r.bpm);
            previous = r.t;
        });
        return cols;
    }

    /** A Plotly date string (local wall time, "YYYY-MM-DD HH:MM[:SS[.mmm]]") → Unix ms. */
    function parsePlotTime(value) {
        if (typeof value === "number") {
            return value; // Plotly hands numbers through when it was given numbers
        }
        var m = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{1,2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?$/
            .exec(String(value).trim());
        if (!m) {
            return NaN;
        }
        var ms = m[7] ? Math.round(Number("0." + m[7]) * 1000) : 0;
        return new Date(
            Number(m[1]), Number(m[2]) - 1, Number(m[3]),
            Number(m[4] || 0), Number(m[5] || 0), Number(m[6] || 0), ms
        ).getTime();
    }

    function pad2(n) {
        return (n < 10 ? "0" : "") + n;
    }

    /** Unix ms → local "YYYY-MM-DD HH:MM", the custom range fields' format. */
    function fieldTime(ms) {
        var d = new Date(ms);
        return d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate()) + " " +
            pad2(d.getHours()) + ":" + pad2(d.getMinutes());
    }

    /** A custom range field (local "YYYY-MM-DD HH:MM", seconds optional) → Unix ms, or NaN. */
    function parseField(text) {
        var s = String(text || "").trim();
        return /^\d{4}-\d{2}-\d{2}[ T]\d{1,2}:\d{2}(:\d{2})?$/.test(s) ? parsePlotTime(s) : NaN;
    }

    /** "<prefix>api/patients/<id>/<what>?<params>" (prefix "/" or "/some/prefix/"). */
    function apiUrl(prefix, patient, what, params) {
        var base = String(prefix || "/").replace(/\/+$/, "") + API +
            encodeURIComponent(patient) + "/" + what;
        var query = Object.keys(params || {}).filter(function (k) {
            return params[k] !== null && params[k] !== undefined;
        }).map(function (k) {
            return encodeURIComponent(k) + "=" + encodeURIComponent(params[k]);
        }).join("&");
        return query ? base + "?" + query : base;
    }

    /** The export links of the shown range [from, to). */
    function exportUrls(prefix, patient, from, to) {
        var range = {from: Math.floor(from), to: Math.ceil(to)};
        return {
            readings: apiUrl(prefix, patient, "readings.csv", range),
            trend: apiUrl(prefix, patient, "trend.csv", range),
        };
    }

    /** The query of the next live update of `base`: [start of its last bucket, now). */
    function liveQuery(base, now) {
        var last = base.buckets.length ? base.buckets[base.buckets.length - 1].t : null;
        var from = last !== null ? last : base.to - (((base.to % base.width) + base.width) %
            base.width);
        return {from: from, to: Math.max(Math.ceil(now), from + 1), width: base.width};
    }

    /**
     * `base` moved on by a live update (an answer for [update.from, update.to) at base's width):
     * its buckets from update.from on are replaced by the update's, the range ends at update.to
     * (same span) and the buckets wholly before its new start are dropped. A new object.
     */
    function mergeLive(base, update) {
        var span = base.to - base.from;
        var from = update.to - span;
        var kept = base.buckets.filter(function (b) {
            return b.t < update.from && b.t + base.width > from;
        });
        var fresh = (update.buckets || []).filter(function (b) {
            return b.t >= update.from;
        });
        var out = {};
        Object.keys(base).forEach(function (k) {
            out[k] = base[k];
        });
        out.buckets = kept.concat(fresh);
        out.from = from;
        out.to = update.to;
        return out;
    }

    /** A bucket width as people say it: "1 min", "5 min", "1 h", "1 day". */
    function widthText(ms) {
        var s = Math.round(ms / 1000);
        if (s % 86400 === 0) {
            return s / 86400 + (s === 86400 ? " day" : " days");
        }
        if (s % 3600 === 0) {
            return s / 3600 + " h";
        }
        if (s % 60 === 0) {
            return s / 60 + " min";
        }
        return s + " s";
    }

    function plural(n, word) {
        return n.toLocaleString("en-US") + " " + word + (n === 1 ? "" : "s");
    }

    /** The status line for a view (what is drawn, in words), then `note` if any. */
    function statusText(view, note) {
        var text;
        if (view.readings) {
            text = view.readings.length
                ? plural(view.readings.length, "reading") + " (raw) · double-click to go back"
                : "No readings in this range · double-click to go back";
        } else {
            text = view.buckets.length
                ? plural(view.buckets.length, "bucket") + " of " + widthText(view.width) +
                    ": min–max and mean"
                : "No readings in this range";
            text += view.zoomed ? " · double-click to go back" : " · drag to zoom in";
        }
        return note ? text + " · " + note : text;
    }

    /** [lo, hi] of the y axis: the page's base range, widened to the drawn values (hrdash.js). */
    function yRange(view, base) {
        var lo = Infinity;
        var hi = -Infinity;
        if (view.readings) {
            view.readings.forEach(function (r) {
                lo = Math.min(lo, r.bpm);
                hi = Math.max(hi, r.bpm);
            });
        } else {
            view.buckets.forEach(function (b) {
                lo = Math.min(lo, b.min);
                hi = Math.max(hi, b.max);
            });
        }
        var rows = lo <= hi ? [{bpm: lo}, {bpm: hi}] : [];
        return core().yRange(rows, base);
    }

    /**
     * The figure of a view: {data: [band, line], layout}. `theme`: colours read from the card's
     * CSS ({text, muted, grid, band, line}); `layout`: the Python base layout.
     */
    function figure(view, theme, layout, opts) {
        var plotTime = core().plotTime;
        var band = {
            type: "bar", x: [], y: [], base: [], width: [], offset: 0,
            marker: {color: theme.band, line: {width: 0}},
            hoverinfo: "skip", showlegend: false,
        };
        var line;
        if (view.readings) {
            var raw = rawSeries(view.readings, opts.rawGapMs);
            line = {
                type: "scatter",
                mode: view.readings.length <= MARKERS_UP_TO ? "lines+markers" : "lines",
                x: raw.t.map(function (t) {
                    return t === null ? null : plotTime(t);
                }),
                y: raw.bpm,
                connectgaps: false,
                line: {color: theme.line, width: 1.5},
                marker: {color: theme.line, size: 3},
                hovertemplate: "%{x|%H:%M:%S.%L}<br><b>%{y} bpm</b><extra></extra>",
            };
        } else {
            var w = view.width;
            view.buckets.forEach(function (b) {
                band.x.push(plotTime(b.t));
                band.base.push(b.min);
                band.y.push(b.max - b.min);
                band.width.push(w);
            });
            var cols = series(view.buckets, w);
            line = {
                type: "scatter",
                mode: "lines",
                x: cols.t.map(function (t) {
                    return t === null ? null : plotTime(t + w / 2);
                }),
                y: cols.mean,
                customdata: cols.t.map(function (t, i) {
                    return t === null ? null : [cols.min[i], cols.max[i], cols.n[i]];
                }),
                connectgaps: false,
                // Thinner when the buckets are narrow on screen: the band must show beside it.
                line: {color: theme.line, width: cols.t.length > THIN_LINE_ABOVE ? 1.2 : 2},
                hovertemplate: "%{x|%H:%M}<br><b>mean %{y:.0f} bpm</b><br>" +
                    "min %{customdata[0]} – max %{customdata[1]} · %{customdata[2]} readings" +
                    "<extra></extra>",
            };
        }
        var out = JSON.parse(JSON.stringify(layout));
        out.font = out.font || {};
        out.font.color = theme.text;
        out.xaxis.range = [plotTime(view.from), plotTime(view.to)];
        if (opts.width) {
            out.xaxis.nticks = Math.max(3, Math.floor(opts.width / TICK_SPACING_PX));
        }
        out.xaxis.autorange = false;
        out.xaxis.linecolor = theme.grid;
        out.xaxis.tickcolor = theme.grid;
        out.xaxis.tickfont = {color: theme.muted};
        out.yaxis.range = yRange(view, opts.yBase);
        out.yaxis.gridcolor = theme.grid;
        out.yaxis.tickfont = {color: theme.muted};
        out.yaxis.title = {text: "bpm", font: {color: theme.muted}};
        out.hoverlabel = {bgcolor: theme.card, bordercolor: theme.grid, font: {color: theme.text}};
        return {data: [band, line], layout: out};
    }

    /**
     * What a plotly_relayout event asks for: {reset: true} (double click, autorange),
     * {from, to} (a zoom on x, Unix ms), or null (anything else: a resize, our own draws).
     */
    function relayoutRange(ev) {
        if (!ev) {
            return null;
        }
        if (ev["xaxis.autorange"] === true) {
            return {reset: true};
        }
        var a = ev["xaxis.range[0]"];
        var b = ev["xaxis.range[1]"];
        if (a === undefined && Array.isArray(ev["xaxis.range"])) {
            a = ev["xaxis.range"][0];
            b = ev["xaxis.range"][1];
        }
        if (a === undefined || b === undefined) {
            return null;
        }
        var from = parsePlotTime(a);
        var to = parsePlotTime(b);
        if (!isFinite(from) || !isFinite(to) || from >= to) {
            return null;
        }
        return {from: Math.floor(from), to: Math.ceil(to)};
    }

    // -- the card -------------------------------------------------------------------------------

    function el(name) {
        return document.getElementById(S.config.ids[name]);
    }

    function setStatus(text, error) {
        var node = el("status");
        if (!node) {
            return;
        }
        if (node.textContent !== text) {
            node.textContent = text; // server text: only ever as text
        }
        node.classList.toggle("hr-trend__status--error", Boolean(error));
    }

    function theme(card) {
        var css = getComputedStyle(card);
        function v(name, fallback) {
            var value = css.getPropertyValue(name).trim();
            return value || fallback;
        }
        return {
            text: v("--hr-text", "#1e293b"),
            muted: v("--hr-muted", "#64748b"),
            grid: v("--hr-line", "#e2e8f0"),
            card: v("--hr-card", "#ffffff"),
            band: v("--hr-trend-band", "rgba(194, 65, 12, 0.18)"),
            line: v("--hr-trend-line", "#c2410c"),
        };
    }

    function serverNow() {
        return S.base.to + (performance.now() - S.base.receivedAt);
    }

    function shownRange() {
        return S.zoom || S.base;
    }

    /** One request to the trend route: resolves to the JSON body, rejects with one line. */
    function getTrend(params) {
        var url = apiUrl(S.page.prefix, S.page.patient, "trend", params);
        return fetch(url, {cache: "no-store", credentials: "same-origin"}).then(function (r) {
            if (r.ok) {
                return r.json();
            }
            return r.text().then(function (text) {
                var line = String(text || "").split("\n")[0].trim();
                throw new Error(line || "the trend is unavailable (HTTP " + r.status + ")");
            });
        }, function () {
            throw new Error("cannot reach the server for the trend");
        });
    }

    function markRange(range) {
        var card = el("card");
        card.setAttribute("data-range", range);
        Array.prototype.forEach.call(
            el("ranges").querySelectorAll("[data-range]"),
            function (b) {
                b.setAttribute("aria-pressed", String(b.getAttribute("data-range") === range));
            }
        );
    }

    function fillFields(view) {
        var set = window.dash_clientside && window.dash_clientside.set_props;
        [["from", view.from], ["to", view.to]].forEach(function (pair) {
            var text = fieldTime(pair[1]);
            if (set) {
                set(S.config.ids[pair[0]], {value: text});
            } else {
                el(pair[0]).value = text;
            }
        });
    }

    /** Load a range: {range: "1h"} or {from, to} (custom). */
    function load(query) {
        S.baseGen += 1;
        S.zoomGen += 1;
        var gen = S.baseGen;
        var range = query.range || "custom";
        markRange(range);
        setStatus(S.config.loading, false);
        var params = query.range ? {range: query.range} : {from: query.from, to: query.to};
        return getTrend(params).then(function (body) {
            if (gen !== S.baseGen) {
                return;
            }
            S.base = {
                range: range,
                from: body.from,
                to: body.to,
                width: body.width,
                buckets: body.buckets || [],
                readings: null,
                receivedAt: performance.now(),
            };
            S.zoom = null;
            fillFields(S.base);
            draw();
        }, function (err) {
            if (gen === S.baseGen) {
                setStatus(err.message, true);
            }
        });
    }

    function zoomTo(from, to) {
        if (!S.base) {
            return;
        }
        S.zoomGen += 1;
        var gen = S.zoomGen;
        var baseGen = S.baseGen;
        setStatus(S.config.loading, false);
        getTrend({from: from, to: to, raw: 1}).then(function (body) {
            if (gen !== S.zoomGen || baseGen !== S.baseGen) {
                return;
            }
            S.zoom = {
                from: from,
                to: to,
                width: body.width,
                buckets: body.buckets || [],
                readings: Array.isArray(body.readings) ? body.readings : null,
                zoomed: true,
            };
            fillFields(S.zoom);
            draw();
        }, function (err) {
            if (gen === S.zoomGen) {
                setStatus(err.message, true);
            }
        });
    }

    function unzoom() {
        S.zoomGen += 1;
        S.zoom = null;
        if (S.base) {
            fillFields(S.base);
            draw();
        }
    }

    /** The live update: [start of the last bucket, now) at the same width, merged in. */
    function refresh() {
        var base = S.base;
        if (!base || base.range === "custom" || S.refreshing || document.hidden) {
            return;
        }
        var now = serverNow();
        var gen = S.baseGen;
        var q = liveQuery(base, now);
        if (now - q.from > base.to - base.from) {
            load({range: base.range}); // away for longer than the range: start afresh
            return;
        }
        S.refreshing = true;
        getTrend(q).then(function (body) {
            S.refreshing = false;
            if (gen !== S.baseGen) {
                return;
            }
            var merged = mergeLive(S.base, {from: q.from, to: body.to, buckets: body.buckets});
            merged.receivedAt = performance.now();
            S.base = merged;
            if (!S.zoom) {
                draw();
            }
        }, function (err) {
            S.refreshing = false;
            if (gen === S.baseGen && !S.zoom) {
                setStatus(err.message, true);
            }
        });
    }

    function draw() {
        var gd = S.gd;
        var card = el("card");
        var view = shownRange();
        if (!gd || !card || !view) {
            return;
        }
        var fig = figure(view, theme(card), S.config.layout, {
            rawGapMs: S.config.raw_gap_ms,
            yBase: S.page.y_range || [40, 160],
            width: gd.clientWidth,
        });
        var links = exportUrls(S.page.prefix, S.page.patient, view.from, view.to);
        el("readings_csv").setAttribute("href", links.readings);
        el("trend_csv").setAttribute("href", links.trend);
        var points = Math.max(fig.data[0].x.length, view.readings ? view.readings.length :
            view.buckets.length);
        window.Plotly.react(gd, fig.data, fig.layout).then(
            function () {
                S.drawn += 1;
                card.setAttribute("data-mode", view.readings ? "raw" : "buckets");
                card.setAttribute("data-from", String(view.from));
                card.setAttribute("data-to", String(view.to));
                card.setAttribute("data-width", String(view.width));
                card.setAttribute("data-points", String(points));
                card.setAttribute("data-drawn", String(S.drawn));
                setStatus(statusText(view, S.config.note), false);
            }
        );
    }

    function onClick(ev) {
        var target = ev.target;
        var button = target && target.closest ? target.closest("[data-range]") : null;
        if (button && el("ranges").contains(button)) {
            load({range: button.getAttribute("data-range")});
            return;
        }
        if (target && target.closest && target.closest("#" + S.config.ids.show)) {
            showCustom();
        }
    }

    function onKey(ev) {
        if (ev.key === "Enter" && ev.target && (ev.target.id === S.config.ids.from ||
                ev.target.id === S.config.ids.to)) {
            showCustom();
        }
    }

    function showCustom() {
        var from = parseField(el("from").value);
        var to = parseField(el("to").value);
        if (!isFinite(from) || !isFinite(to)) {
            setStatus("Custom range: write both times as " + S.config.time_format +
                " (local time)", true);
            return;
        }
        if (from >= to) {
            setStatus("Custom range: the start must be before the end", true);
            return;
        }
        load({from: from, to: to});
    }

    function onRelayout(ev) {
        var asked = relayoutRange(ev);
        if (!asked) {
            return;
        }
        if (asked.reset) {
            unzoom();
        } else {
            zoomTo(asked.from, asked.to);
        }
    }

    /** Wait for dcc.Graph's first draw (plotly.js loads lazily), then call `then(gd)`. */
    function whenPlotted(then) {
        var started = performance.now();
        (function check() {
            var host = document.getElementById(S.config.ids.graph);
            var gd = host && host.querySelector(".js-plotly-plot");
            if (gd && gd._fullLayout && window.Plotly && typeof gd.on === "function") {
                then(gd);
            } else if (performance.now() - started < WAIT_PLOT_MS) {
                setTimeout(check, 30);
            }
        })();
    }

    function tick() {
        if (!S.bound || !document.body.contains(S.bound)) {
            clearInterval(S.timer); // the page has gone: stop
            S.timer = null;
            S.bound = null;
            return;
        }
        refresh();
    }

    function trend_start(config, page) {
        var nu = window.dash_clientside.no_update;
        if (!config || !page || !page.patient) {
            return nu;
        }
        S.config = config;
        S.page = page;
        S.base = null;
        S.zoom = null;
        S.gd = null;
        var card = el("card");
        if (!card) {
            return nu;
        }
        if (S.bound !== card) {
            card.addEventListener("click", onClick);
            card.addEventListener("keydown", onKey);
            S.bound = card;
        }
        if (S.timer !== null) {
            clearInterval(S.timer);
        }
        S.timer = setInterval(tick, config.refresh_ms);
        var first = load({range: config.default_range});
        whenPlotted(function (gd) {
            S.gd = gd;
            gd.on("plotly_relayout", onRelayout);
            first.then(function () {
                if (S.base) {
                    draw();
                }
            });
        });
        return nu;
    }

    // Back on a hidden tab: move on at once rather than at the next tick.
    document.addEventListener("visibilitychange", function () {
        if (!document.hidden && S.bound && document.body.contains(S.bound)) {
            refresh();
        }
    });

    window.dash_clientside = window.dash_clientside || {};
    var ns = (window.dash_clientside.hrdash = window.dash_clientside.hrdash || {});
    ns.trend_start = trend_start;

    // Pure helpers (and the per-tab state S), for tests and the console.
    window.hrdashTrend = {
        series: series,
        rawSeries: rawSeries,
        parsePlotTime: parsePlotTime,
        fieldTime: fieldTime,
        parseField: parseField,
        apiUrl: apiUrl,
        exportUrls: exportUrls,
        liveQuery: liveQuery,
        mergeLive: mergeLive,
        widthText: widthText,
        statusText: statusText,
        figure: figure,
        relayoutRange: relayoutRange,
        state: S,
    };
})();
