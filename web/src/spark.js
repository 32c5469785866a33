// A sparkline on a small canvas: a few lines of our own rather than a chart per row.

export function drawSpark(canvas, points) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 96;
  const hgt = canvas.clientHeight || 24;
  if (canvas.width !== Math.round(w * dpr)) canvas.width = Math.round(w * dpr);
  if (canvas.height !== Math.round(hgt * dpr)) canvas.height = Math.round(hgt * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, hgt);
  const pts = (points || []).filter((p) => Array.isArray(p) && isFinite(p[0]) && isFinite(p[1]));
  if (pts.length < 2) return;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const [x, y] of pts) {
    x0 = Math.min(x0, x); x1 = Math.max(x1, x);
    y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  if (x1 === x0) return;
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const pad = 2;
  ctx.beginPath();
  pts.forEach(([x, y], i) => {
    const px = ((x - x0) / (x1 - x0)) * (w - 2 * pad) + pad;
    const py = hgt - pad - ((y - y0) / (y1 - y0)) * (hgt - 2 * pad);
    if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
  });
  ctx.strokeStyle = getComputedStyle(canvas).color || "#2a7ae2";
  ctx.lineWidth = 1.25;
  ctx.stroke();
}
