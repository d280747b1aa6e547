// Small SVG line charts (no library, no build step): lineChart(series, opts) -> SVG element.
// series: [{name, color, points: [[x, y], ...], band: [[x, lo, hi], ...]?}]
(function () {
  const NS = "http://www.w3.org/2000/svg";
  function el(name, attrs) { const e = document.createElementNS(NS, name); for (const k in attrs) e.setAttribute(k, attrs[k]); return e; }
  function lineChart(series, opts) {
    const w = opts.width || 640, h = opts.height || 180, pad = 32;
    const svg = el("svg", { width: w, height: h, class: "chart", viewBox: `0 0 ${w} ${h}` });
    const xs = [], ys = [];
    series.forEach(s => { s.points.forEach(p => { xs.push(p[0]); ys.push(p[1]); });
      (s.band || []).forEach(b => { ys.push(b[1], b[2]); }); });
    if (!xs.length) { const t = el("text", { x: pad, y: h / 2, fill: "#6b7385" }); t.textContent = opts.empty || "no data yet"; svg.appendChild(t); return svg; }
    let [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    if (opts.y0 !== undefined) y0 = Math.min(y0, opts.y0);
    if (x1 === x0) x1 = x0 + 1; if (y1 === y0) { y1 += 0.5; y0 -= 0.5; }
    const X = x => pad + (x - x0) / (x1 - x0) * (w - 2 * pad), Y = y => h - pad + 8 - (y - y0) / (y1 - y0) * (h - 2 * pad);
    svg.appendChild(el("line", { x1: pad, y1: h - pad + 8, x2: w - pad, y2: h - pad + 8, stroke: "#ccd" }));
    [y0, y1].forEach(v => { const t = el("text", { x: 2, y: Y(v) + 4, "font-size": 10, fill: "#6b7385" }); t.textContent = (+v).toFixed(3); svg.appendChild(t); });
    series.forEach((s, i) => {
      if (s.band && s.band.length) {
        const up = s.band.map(b => `${X(b[0])},${Y(b[2])}`), down = s.band.slice().reverse().map(b => `${X(b[0])},${Y(b[1])}`);
        svg.appendChild(el("polygon", { points: up.concat(down).join(" "), fill: s.color, opacity: 0.15 }));
      }
      svg.appendChild(el("polyline", { points: s.points.map(p => `${X(p[0])},${Y(p[1])}`).join(" "), fill: "none", stroke: s.color, "stroke-width": 1.8 }));
      const t = el("text", { x: w - pad - 120, y: 14 + 12 * i, "font-size": 11, fill: s.color }); t.textContent = s.name; svg.appendChild(t);
    });
    return svg;
  }
  window.lineChart = lineChart;
  window.PALETTE = ["#2f6fed", "#d64545", "#1f9d55", "#d69e2e", "#805ad5", "#319795", "#dd6b20"];
})();
