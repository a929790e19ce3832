// voxgate dashboard: fetches /dashboard/data/... with the session cookie and draws tables and SVG charts.
// Every value from the records goes into the page as text (textContent, setAttribute), never as markup.
// Each section marks itself rendered on <body data-...> so that a test (or a person) can tell when it is.
"use strict";

(() => {
  const DATA = "/dashboard/data";
  const SVG = "http://www.w3.org/2000/svg";
  const LIVE_MS = 2000;
  const OVERVIEW_MS = 15000;
  const W = 380, H = 190, LEFT = 36, RIGHT = 372, TOP = 8, BOTTOM = 166;
  let timers = [];
  let clockOffset = 0;  // server clock minus this browser's, from the live list's "now"

  // ------------------------------------------------------------ small helpers

  async function get(path) {
    const response = await fetch(DATA + path, {credentials: "same-origin", cache: "no-store",
                                               headers: {Accept: "application/json"}});
    if (response.status === 401) {  // the session expired: the page itself now shows the sign-in form
      location.reload();
      throw new Error("signed out");
    }
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
    return body;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value; else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child == null ? "" : child);
    return node;
  }

  function sv(parent, tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text != null) node.textContent = text;
    parent.append(node);
    return node;
  }

  const byId = (id) => document.getElementById(id);
  const pad = (n) => String(n).padStart(2, "0");
  const ms = (value) => value == null ? "–" : String(Math.round(value));
  const pct = (value) => value == null ? "–" : `${Math.round(value * 100)}%`;

  function clock(iso) {
    if (!iso) return "–";
    const at = new Date(iso), today = new Date();
    const hms = `${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}`;
    return at.toDateString() === today.toDateString() ? hms : `${at.getFullYear()}-${pad(at.getMonth() + 1)}-` +
      `${pad(at.getDate())} ${hms.slice(0, 5)}`;
  }

  function duration(seconds) {
    if (seconds == null) return "–";
    const s = Math.max(0, Math.floor(seconds));
    return `${Math.floor(s / 60)}:${pad(s % 60)}`;
  }

  function outcomeTag(outcome) {
    const kind = outcome === "transferred" ? "warn" : /error|abandon|fail/.test(outcome) ? "bad" : "good";
    return el("span", {class: `tag ${kind}`}, outcome);
  }

  function caller(row) {
    const name = row.caller_id_name && row.caller_id_name !== row.caller_id_number ? ` ${row.caller_id_name}` : "";
    return el("span", {}, el("span", {class: "mono"}, row.caller_id_number || "unknown"),
              el("span", {class: "muted"}, name));
  }

  function fill(tbody, rows) {
    tbody.replaceChildren(...rows.map((cells) => el("tr", {}, ...cells)));
  }

  function status(text) {
    byId("status").textContent = text;
  }

  function every(ms, task) {
    task();
    timers.push(setInterval(task, ms));
  }

  // ------------------------------------------------------------ overview: live, daily, recent

  async function loadLive() {
    const body = await get("/live");
    clockOffset = Date.parse(body.now) - Date.now();
    const now = Date.now() + clockOffset;
    byId("live-count").textContent = String(body.calls.length);
    byId("live-empty").hidden = body.calls.length > 0;
    fill(byId("live").tBodies[0], body.calls.map((call) => [
      el("td", {}, clock(call.started_at)), el("td", {}, caller(call)), el("td", {class: "mono"}, call.destination),
      el("td", {}, call.flow), el("td", {}, call.pbx),
      el("td", {}, el("span", {class: "tag live"}, call.answered_at ? "talking" : "ringing")),
      el("td", {class: "num"}, duration((now - Date.parse(call.started_at)) / 1000)),
    ]));
    document.body.dataset.live = "ok";
  }

  async function loadRecent() {
    const body = await get("/calls?limit=50");
    byId("recent-empty").hidden = body.calls.length > 0;
    fill(byId("recent").tBodies[0], body.calls.map((call) => [
      el("td", {}, el("a", {href: `#/call/${encodeURIComponent(call.call_uuid)}`}, clock(call.started_at))),
      el("td", {}, caller(call)), el("td", {class: "mono"}, call.destination), el("td", {}, call.flow),
      el("td", {}, outcomeTag(call.outcome)), el("td", {class: "muted"}, call.hangup_cause),
      el("td", {class: "num"}, duration(call.duration_s)),
    ]));
    document.body.dataset.recent = "ok";
  }

  async function loadDaily() {
    const flow = byId("flow").value;
    const query = `?days=${byId("days").value}` + (flow ? `&flow=${encodeURIComponent(flow)}` : "");
    const body = await get(`/daily${query}`);
    const select = byId("flow");
    const known = new Set([...select.options].map((option) => option.value));
    for (const name of body.flows) if (!known.has(name)) select.append(el("option", {value: name}, name));
    totals(body.days);
    barChart(byId("chart-calls"), body.days, [["calls", "calls"]]);
    barChart(byId("chart-outcomes"), body.days,
             [["contained", "contained"], ["transferred", "transferred"], ["unanswered", "not answered"]]);
    lineChart(byId("chart-latency"), body.days, [["p50_ms", "p50"], ["p95_ms", "p95"]]);
    document.body.dataset.daily = "ok";
  }

  function totals(days) {
    const sum = (key) => days.reduce((total, day) => total + day[key], 0);
    const answered = sum("answered"), replies = sum("replies");
    const figures = [[sum("calls"), "calls"], [answered, "answered"],
                     [pct(answered ? sum("contained") / answered : null), "contained"],
                     [replies, "agent replies"], [pct(replies ? sum("barged_in") / replies : null), "barged in"]];
    byId("totals").replaceChildren(...figures.map(([value, label]) =>
      el("div", {}, el("b", {}, String(value)), el("span", {}, label))));
  }

  // ------------------------------------------------------------ charts (inline SVG)

  function niceTop(max) {
    if (!(max > 0)) return 4;
    const step = Math.pow(10, Math.floor(Math.log10(max / 4)));
    for (const factor of [1, 2, 2.5, 5, 10]) if (step * factor * 4 >= max) return step * factor * 4;
    return max;
  }

  function frame(svg, days, top) {
    svg.replaceChildren();
    const slot = (RIGHT - LEFT) / Math.max(days.length, 1);
    const y = (value) => BOTTOM - (BOTTOM - TOP) * value / top;
    for (let tick = 0; tick <= 4; tick++) {
      const value = top * tick / 4;
      sv(svg, "line", {class: tick ? "grid" : "axis", x1: LEFT, x2: RIGHT, y1: y(value), y2: y(value)});
      sv(svg, "text", {x: LEFT - 4, y: y(value) + 3, "text-anchor": "end"}, value >= 1000 ? `${value / 1000}k` :
         String(Math.round(value * 10) / 10));
    }
    const stride = Math.ceil(days.length / 7);
    days.forEach((day, i) => {
      if ((days.length - 1 - i) % stride === 0) {
        sv(svg, "text", {x: LEFT + slot * (i + 0.5), y: BOTTOM + 14, "text-anchor": "middle"}, day.day.slice(5));
      }
    });
    return {slot, y};
  }

  function barChart(svg, days, series) {
    const top = niceTop(Math.max(0, ...days.map((day) => series.reduce((t, [key]) => t + day[key], 0))));
    const {slot, y} = frame(svg, days, top);
    const width = Math.max(2, Math.min(slot * 0.7, 28));
    days.forEach((day, i) => {
      let base = 0;
      for (const [key, label] of series) {
        if (!day[key]) continue;
        const bar = sv(svg, "rect", {class: key, x: LEFT + slot * (i + 0.5) - width / 2, y: y(base + day[key]),
                                     width, height: y(base) - y(base + day[key])});
        sv(bar, "title", {}, `${day.day}: ${day[key]} ${label}`);
        base += day[key];
      }
    });
  }

  function lineChart(svg, days, series) {
    const values = days.flatMap((day) => series.map(([key]) => day[key])).filter((v) => v != null);
    const {slot, y} = frame(svg, days, niceTop(Math.max(0, ...values)));
    // The later series is drawn over the earlier one with smaller dots: both stay visible when equal.
    series.slice().reverse().forEach(([key, label], layer) => {
      const points = days.map((day, i) => [day, LEFT + slot * (i + 0.5)]).filter(([day]) => day[key] != null);
      const path = points.map(([day, x]) => `${x},${y(day[key])}`).join(" ");
      sv(svg, "polyline", {class: `line ${label}`, points: path});
      for (const [day, x] of points) {
        const dot = sv(svg, "circle", {class: `dot ${label}`, cx: x, cy: y(day[key]), r: layer ? 3 : 4.5});
        sv(dot, "title", {}, `${day.day}: ${label} ${ms(day[key])} ms over ${day.replies} replies`);
      }
    });
    if (!values.length) sv(svg, "text", {x: (LEFT + RIGHT) / 2, y: (TOP + BOTTOM) / 2, "text-anchor": "middle"},
                           "no agent replies in these days");
  }

  // ------------------------------------------------------------ one call

  const STAGES = [["stt_ms", "stt"], ["llm_first_token_ms", "llm"], ["tts_first_audio_ms", "tts"],
                  ["voice_to_voice_ms", "send"]];

  function waterfall(turn, longest) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "waterfall");
    svg.setAttribute("viewBox", "0 0 220 10");
    sv(svg, "rect", {class: "track", x: 0, y: 0, width: 220, height: 10, rx: 2});
    let start = 0;
    for (const [key, cls] of STAGES) {
      const end = turn[key];
      if (end == null || end <= start) continue;
      const bar = sv(svg, "rect", {class: cls, x: 220 * start / longest, y: 0, height: 10,
                                   width: Math.max(1, 220 * (end - start) / longest)});
      sv(bar, "title", {}, `${cls}: ${ms(start)}–${ms(end)} ms`);
      start = end;
    }
    return svg;
  }

  function turnItem(turn, longest) {
    const item = el("li", {class: `turn ${turn.speaker}`},
                    el("div", {class: "who"}, `${turn.speaker} · ${clock(turn.started_at)}`),
                    el("div", {class: "text"}, turn.text));
    if (turn.interrupted && turn.heard_text != null && turn.heard_text !== turn.text) {
      const stopped = `barged in, playback stopped in ${ms(turn.barge_in_ms)} ms`;
      item.append(el("div", {class: "heard"}, `caller heard: “${turn.heard_text}” — ${stopped}`));
    }
    if (turn.speaker === "agent" && turn.voice_to_voice_ms != null) {
      item.append(el("div", {class: "timing"}, waterfall(turn, longest),
                     `voice to voice ${ms(turn.voice_to_voice_ms)} ms`));
    }
    return item;
  }

  async function loadCall(callUuid) {
    const body = await get(`/calls/${encodeURIComponent(callUuid)}`);
    const call = body.call;
    byId("call-title").textContent = `${call.caller_id_number || "unknown"} → ${call.destination}`;
    byId("call-outcome").replaceChildren(outcomeTag(call.outcome));
    const meta = [["started", clock(call.started_at)], ["answered", clock(call.answered_at)],
                  ["ended", clock(call.ended_at)],
                  ["duration", `${duration(call.duration_s)} (talk ${duration(call.billsec)})`],
                  ["flow", call.flow], ["direction", call.direction], ["pbx", call.pbx],
                  ["hangup cause", call.hangup_cause], ["caller name", call.caller_id_name || "–"],
                  ["call uuid", call.call_uuid]];
    byId("call-meta").replaceChildren(...meta.map(([key, value]) =>
      el("div", {}, el("dt", {}, key), el("dd", {}, value))));
    const agent = body.turns.filter((turn) => turn.speaker === "agent");
    const longest = Math.max(1, ...agent.map((turn) => turn.voice_to_voice_ms || 0));
    byId("transcript").replaceChildren(...body.turns.map((turn) => turnItem(turn, longest)));
    byId("transcript-empty").hidden = body.turns.length > 0;
    fill(byId("latency").tBodies[0], agent.map((turn) => [
      el("td", {class: "num"}, String(turn.seq)), el("td", {}, turn.text),
      ...["stt_ms", "llm_first_token_ms", "tts_first_audio_ms", "voice_to_voice_ms", "barge_in_ms"].map((key) =>
        el("td", {class: "num"}, ms(turn[key]))),
    ]));
    const actions = [
      ...body.tool_calls.map((tool) => `tool ${tool.name} (${ms(tool.duration_ms)} ms): ` +
                                       (tool.error ? `failed: ${tool.error}` : tool.result || "done")),
      ...body.transfers.map((transfer) => `transfer to ${transfer.destination} (${transfer.kind}, ` +
                                          `${transfer.outcome}): ${transfer.reason}`),
    ];
    byId("actions").replaceChildren(...actions.map((text) => el("li", {}, text)));
    byId("actions-card").hidden = actions.length === 0;
    document.body.dataset.call = "ok";
  }

  // ------------------------------------------------------------ routing and refresh

  function guard(task) {
    // Promise.resolve().then: a task that throws before its promise (a malformed #/call/%zz) reports too
    return () => Promise.resolve().then(task).then(() => status(`updated ${clock(new Date().toISOString())}`),
                                                   (error) => status(`could not load: ${error.message}`));
  }

  function route() {
    timers.forEach(clearInterval);
    timers = [];
    const match = location.hash.match(/^#\/call\/(.+)$/);
    byId("overview").hidden = Boolean(match);
    byId("detail").hidden = !match;
    if (match) {
      delete document.body.dataset.call;
      guard(() => loadCall(decodeURIComponent(match[1])))();
      return;
    }
    every(LIVE_MS, guard(loadLive));
    every(OVERVIEW_MS, guard(() => Promise.all([loadRecent(), loadDaily()])));
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const id of ["days", "flow"]) byId(id).addEventListener("change", guard(loadDaily));
    window.addEventListener("hashchange", route);
    route();
  });
})();
