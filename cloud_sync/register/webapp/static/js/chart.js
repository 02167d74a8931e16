// One sensor's chart: fetches the downsampled buckets (min, mean, max per bucket) from the register and draws
// them with uPlot, the min-max band shaded around the mean. Sized to its container, so a phone gets fewer buckets.
// The words (series names, status) come from the page's data attributes: the server translates them.
import uPlot from "uplot";

const figure = document.getElementById("chart");
const status = document.getElementById("chart-status");

function size() {
  const width = Math.max(280, Math.min(figure.clientWidth || 600, 3000));
  return { width, height: Math.round(Math.min(420, Math.max(220, width * 0.5))) };
}

async function draw() {
  const { width, height } = size();
  const url = new URL(figure.dataset.src, window.location.href);
  url.searchParams.set("width", String(width));
  const started = performance.now();
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!response.ok) {
    status.textContent = figure.dataset.failed;
    figure.dataset.state = "failed";
    return;
  }
  const body = await response.text();
  const data = JSON.parse(body);
  const opts = {
    width,
    height,
    scales: { x: { time: true } },
    series: [
      { label: figure.dataset.labelTime },
      { label: figure.dataset.labelMin, stroke: "#5b7fa6", width: 1 },
      { label: figure.dataset.labelMean, stroke: "#0b3d66", width: 2 },
      { label: figure.dataset.labelMax, stroke: "#5b7fa6", width: 1 },
    ],
    bands: [{ series: [3, 1], fill: "rgba(91, 127, 166, 0.25)" }],
    axes: [{}, { label: figure.dataset.unit }],
  };
  figure.querySelector(".chart-canvas").replaceChildren();
  new uPlot(opts, [data.t, data.min, data.mean, data.max], figure.querySelector(".chart-canvas"));
  const points = data.count.reduce((a, b) => a + b, 0);
  status.textContent = figure.dataset.drawn.replace("{buckets}", String(data.t.length)).replace("{points}", String(points));
  // For the tests and the benchmark: what was drawn, how big the data was, how long it took.
  figure.dataset.state = "drawn";
  figure.dataset.buckets = String(data.t.length);
  figure.dataset.points = String(points);
  figure.dataset.bytes = String(new TextEncoder().encode(body).length);
  figure.dataset.ms = String(Math.round(performance.now() - started));
}

draw().catch(() => {
  status.textContent = figure.dataset.failed;
  figure.dataset.state = "failed";
});
