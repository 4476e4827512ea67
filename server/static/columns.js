// The charts' data as uPlot takes it, per chart: [ts, y1, y1 min, y1 max,
// y2, ...]; min and max (a downsampled point's band) are null for live
// samples. Filled from history in the column form (server/history/columns.py)
// and from live samples, one row at a time.

const NOTHING = () => [null, null, null];

function valueAt(sample, key) {
  let node = sample;
  for (const part of key.split(".")) node = node === null || node === undefined ? undefined : node[part];
  return node === undefined ? null : node;
}

export class Columns {
  // `charts`: the declaration (charts.js's declaredCharts); `interval`: the
  // server's sampling interval, in seconds.
  constructor(charts, interval) {
    this.charts = charts;
    this.interval = interval;
    this.ts = [];
    this.byChart = {}; // chart key -> per line [values, band min, band max]
    this.lastTs = 0;
    this.lastStep = interval;
    this.reset();
  }

  reset() {
    this.ts = [];
    this.lastTs = 0;
    for (const key in this.charts) this.byChart[key] = this.charts[key].series.map(() => [[], [], []]);
  }

  pushRow(ts, valuesOf) {
    this.ts.push(ts);
    for (const key in this.charts) {
      this.charts[key].series.forEach((spec, i) => {
        const [v, lo, hi] = valuesOf(spec[1]);
        this.byChart[key][i][0].push(v);
        this.byChart[key][i][1].push(lo);
        this.byChart[key][i][2].push(hi);
      });
    }
  }

  // A live sample; false when it is drawn already.
  pushSample(s) {
    if (s.ts <= this.lastTs) return false;
    const step = s.step || this.interval;
    // A hole in time (the server was down) is drawn as a gap, not a line across.
    if (this.lastTs && s.ts - this.lastTs > 3 * Math.max(step, this.lastStep, this.interval)) {
      this.pushRow(this.lastTs + Math.max(step, this.lastStep), NOTHING);
    }
    this.pushRow(s.ts, (key) => [valueAt(s, key), null, null]);
    this.lastTs = s.ts;
    this.lastStep = step;
    return true;
  }

  // History in columns: the whole of it, or (a `history` with `since`) what
  // came after the points drawn. A hole gets a null row.
  load(body) {
    this.reset();
    this.append(body);
  }

  append(body) {
    const ts = body.ts || [];
    const series = body.series || {};
    const constant = body.constant || {};
    const value = (key, i) => (series[key] ? series[key][i] : key in constant ? constant[key] : null);
    const step = body.step || this.interval;
    if (!this.ts.length && this.isEven(ts, step)) {
      // A whole history with no hole in it (the page's own, at load): its
      // columns are the charts' columns, taken whole, not a row at a time.
      const column = (key) => series[key] ? series[key].slice() : new Array(ts.length).fill(key in constant ? constant[key] : null);
      this.ts = ts.slice();
      for (const key in this.charts) {
        this.byChart[key] = this.charts[key].series.map(([, metric]) =>
          [column(metric), column("bands." + metric + ".0"), column("bands." + metric + ".1")]);
      }
      this.lastTs = ts[ts.length - 1];
      this.lastStep = step;
      return;
    }
    for (let i = 0; i < ts.length; i++) {
      if (ts[i] <= this.lastTs) continue; // already drawn
      if (this.lastTs && ts[i] - this.lastTs > 3 * Math.max(step, this.lastStep, this.interval)) {
        this.pushRow(this.lastTs + Math.max(step, this.lastStep), NOTHING);
      }
      this.pushRow(ts[i], (key) => [value(key, i), value("bands." + key + ".0", i), value("bands." + key + ".1", i)]);
      this.lastTs = ts[i];
      this.lastStep = step;
    }
  }

  // No gap wider than three steps: nothing to mark with a null row.
  isEven(ts, step) {
    const widest = 3 * Math.max(step, this.interval);
    for (let i = 1; i < ts.length; i++) if (ts[i] - ts[i - 1] > widest) return false;
    return ts.length > 0;
  }

  // Only the last `seconds` kept.
  trim(seconds) {
    const cutoff = this.ts[this.ts.length - 1] - seconds;
    let drop = 0;
    while (drop < this.ts.length && this.ts[drop] < cutoff) drop++;
    if (drop === 0) return;
    this.ts.splice(0, drop);
    for (const key in this.charts) this.byChart[key].forEach((triple) => triple.forEach((col) => col.splice(0, drop)));
  }

  // One chart's data, in uPlot's order.
  data(key) {
    const data = [this.ts];
    for (const triple of this.byChart[key]) data.push(triple[0], triple[1], triple[2]);
    return data;
  }

  // A band's edges are drawn only when some point has them (a downsampled
  // range): raw samples have none, and walking 900 nulls per edge per draw
  // is a fifth of the page's first drawing.
  hasBands(key) {
    return this.byChart[key].some((triple) => triple[1].some((v) => v !== null));
  }
}
