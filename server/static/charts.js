// The history charts: uPlot, one per chart the page declares, drawn from a
// Columns (columns.js).
import { $, rate, pctWhole, cssVar, exposeForTests } from "./common.js";

// The charts are declared once, in server/series.py (CHARTS), and come in
// the page: each line is [legend label, a key of the column form
// (server/history/columns.py)]; its band (min and max of a downsampled point) is
// `bands.<key>.0` and `.1`. Percent charts run 0-100; rates fit their data.
export function declaredCharts() {
  const charts = {};
  for (const el of document.querySelectorAll(".plot[data-lines]")) {
    const percent = el.dataset.unit === "percent";
    charts[el.id.replace(/^chart-/, "")] = {
      el: el.id,
      series: JSON.parse(el.dataset.lines),
      max: percent ? 100 : null,
      fmt: percent ? pctWhole : rate,
    };
  }
  return charts;
}

function plotHeight() {
  return parseFloat(getComputedStyle(document.body).getPropertyValue("--plot-height")) || 180;
}

function chartSize(container, height) {
  return { width: Math.max(container.clientWidth, 200), height: height };
}

// Time labels, one line each, never two dates on top of each other: by the
// distance between ticks, seconds, the hour, or the day and hour.
// Made on first use: an Intl formatter costs milliseconds to build, and the
// page's first paint should not wait for four of them.
const formats = {};
function timeFormat(name) {
  const options = {
    clock: { hour: "2-digit", minute: "2-digit", hourCycle: "h23" },
    clockSeconds: { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" },
    dayClock: { weekday: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" },
    day: { weekday: "short", day: "numeric" },
  }[name];
  return formats[name] || (formats[name] = new Intl.DateTimeFormat(undefined, options));
}
function timeLabels(u, splits, axisIdx, space, incr) {
  const format = timeFormat(incr >= 86400 ? "day" : incr >= 3600 * 3 ? "dayClock" : incr >= 60 ? "clock" : "clockSeconds");
  return splits.map((t) => format.format(new Date(t * 1000)));
}

// The y axis as wide as its longest label (no clipped "191 MiB/s"). A
// label's width is measured once: setting a canvas font is not free, and
// the same few labels come back on every redraw.
const labelWidths = new Map();
function axisWidth(u, values, axisIdx, cycleNum) {
  const axis = u.axes[axisIdx];
  if (cycleNum > 1) return axis._size;
  let size = axis.ticks.size + axis.gap + 4;
  const longest = (values || []).reduce((a, v) => (v.length > a.length ? v : a), "");
  if (longest) {
    const key = axis.font[0] + "|" + longest;
    if (!labelWidths.has(key)) {
      if (labelWidths.size > 500) labelWidths.clear();
      u.ctx.font = axis.font[0];
      labelWidths.set(key, u.ctx.measureText(longest).width / devicePixelRatio);
    }
    size += labelWidths.get(key);
  }
  return Math.ceil(size);
}

export class Charts {
  // `specs`: declaredCharts(); `columns`: their data; `windowSeconds`: a
  // function, the time the charts span now (the legend's time says the
  // weekday past a day).
  constructor(specs, columns, windowSeconds) {
    this.specs = specs;
    this.columns = columns;
    this.windowSeconds = windowSeconds;
    this.plots = {};
    // Observing reports every chart once at the start: a size that has not
    // changed is not drawn again.
    const resize = new ResizeObserver(() => {
      const height = plotHeight();
      for (const key in this.plots) {
        const size = chartSize($(this.specs[key].el), height);
        if (size.width !== this.plots[key].width || size.height !== this.plots[key].height) this.plots[key].setSize(size);
      }
    });
    for (const key in specs) resize.observe($(specs[key].el));
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => this.build());
  }

  // Made at the first draw, with the data; then given new data.
  draw() {
    if (!Object.keys(this.plots).length) this.build(); else this.redraw();
  }

  // Made again, in the colours of the scheme now in force.
  build() {
    for (const key in this.plots) this.plots[key].destroy();
    this.plots = {};
    const axis = cssVar("--muted");
    const grid = cssVar("--grid");
    const colors = [cssVar("--series-1"), cssVar("--series-2")];
    const font = "11px system-ui, sans-serif";
    const legendTime = (u, t) => {
      if (t === null || t === undefined) return "–";
      return timeFormat(this.windowSeconds() > 86400 ? "dayClock" : "clockSeconds").format(new Date(t * 1000));
    };
    // Every container measured before any chart is put in one: one layout,
    // not one forced by each chart's DOM before the next is measured.
    const sizes = {};
    const height = plotHeight();
    for (const key in this.specs) $(this.specs[key].el).textContent = "";
    for (const key in this.specs) sizes[key] = chartSize($(this.specs[key].el), height);
    for (const key in this.specs) {
      const spec = this.specs[key];
      const container = $(spec.el);
      const size = sizes[key];
      const show = (u, v) => (v === null || v === undefined ? "–" : spec.fmt(v));
      const withBands = this.columns.hasBands(key);
      const series = [{ label: "time", value: legendTime }];
      const bands = [];
      spec.series.forEach(([label], i) => {
        const at = series.length;
        series.push({ label: label, stroke: colors[i], fill: colors[i] + "22", width: 1.5, points: { show: false }, value: show });
        for (const edge of ["min", "max"]) {
          series.push({ label: label + " " + edge, class: "band-edge", show: withBands, stroke: "transparent", width: 0, points: { show: false }, value: show });
        }
        bands.push({ series: [at + 2, at + 1], fill: colors[i] + "40" });
      });
      const opts = {
        width: size.width,
        height: size.height,
        legend: { show: true, live: true },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: spec.max ? { range: [0, spec.max] } : { range: (u, min, max) => [0, Math.max(max, 1024) * 1.1] } },
        axes: [
          { stroke: axis, font: font, space: 80, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, values: timeLabels },
          { stroke: axis, font: font, space: 30, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, size: axisWidth, values: (u, vals) => vals.map((v) => spec.fmt(v)) },
        ],
        series: series,
        bands: bands,
      };
      this.plots[key] = new uPlot(opts, this.columns.data(key), container);
    }
    exposeForTests("__dashboardPlots", this.plots);
    this.showLatest(); // made with the data: no second setData
  }

  redraw() {
    for (const key in this.plots) {
      this.showBands(key);
      this.plots[key].setData(this.columns.data(key));
    }
    this.showLatest();
  }

  showBands(key) {
    const u = this.plots[key];
    const wanted = this.columns.hasBands(key);
    if (u.series[2].show === wanted) return;
    u.batch(() => {
      this.specs[key].series.forEach((spec, i) => {
        u.setSeries(3 * i + 2, { show: wanted });
        u.setSeries(3 * i + 3, { show: wanted });
      });
    });
  }

  // With no pointer over a chart, its legend shows the latest values.
  showLatest() {
    const last = this.columns.ts.length - 1;
    for (const key in this.plots) {
      if (this.plots[key].cursor.left < 0 && last >= 0) this.plots[key].setLegend({ idx: last });
    }
  }
}
