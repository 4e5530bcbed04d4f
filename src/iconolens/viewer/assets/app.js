/* iconolens viewer: a gallery of a run's images and one page per image with its maps and boxes.
 *
 * Data arrives as scripts calling ICONOLENS.receive* (pages opened from file:// may not fetch), maps as
 * data: PNGs (a canvas may read those). Boxes derived at the threshold follow iconolens.evaluate.boxes
 * .boxes_from_map on the map iconolens.viewer.maps.viewer_saliency computes: the same float64 arithmetic in
 * the same order, so both give the same boxes.
 */
"use strict";

const PAGE_SIZE = 100;
const OUTCOMES = ["correct", "wrong", "missed"];

const state = {
  run: null,
  chunks: [],
  entries: [],
  filtered: [],
  details: {},
  decoded: {},
  saliency: {},
  view: {},
};

const $ = (id) => document.getElementById(id);

function loadScript(src) {
  const script = document.createElement("script");
  script.src = src;
  script.onerror = () => showStatus(`could not load ${src}: rebuild the viewer with iconolens view`);
  document.body.appendChild(script);
}

function showStatus(text) {
  $("status").textContent = text;
}

function option(select, value, text) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  select.appendChild(o);
}

function fmt(value, digits = 3) {
  return value === null || value === undefined || Number.isNaN(value) ? "n/a" : Number(value).toFixed(digits);
}

/* ---------- data arrival ---------- */

window.ICONOLENS = {
  receiveRun(run) {
    state.run = run;
    document.title = run.title;
    $("title").textContent = run.title;
    const notes = $("notes");
    for (const note of run.notes) {
      const li = document.createElement("li");
      li.textContent = note;
      notes.appendChild(li);
    }
    if (run.unreadable.length) {
      const li = document.createElement("li");
      li.className = "unreadable";
      li.textContent = `${run.unreadable.length} image(s) could not be read and are not shown: ` +
        run.unreadable.map((u) => `${u.id} (${u.reason})`).join("; ");
      notes.appendChild(li);
    }
    showStatus(`Loading the index of ${run.images} images…`);
    for (let k = 0; k < run.chunks; k++) loadScript(`data/index-${String(k).padStart(3, "0")}.js`);
  },
  receiveIndex(k, entries) {
    state.chunks[k] = entries;
    const loaded = state.chunks.filter((c) => c !== undefined).length;
    if (loaded < state.run.chunks) {
      showStatus(`Loading the index: ${loaded} of ${state.run.chunks} parts…`);
      return;
    }
    state.entries = [].concat(...state.chunks);
    state.entries.forEach((e, i) => { e.position = i; });
    setUpGallery();
    window.addEventListener("hashchange", route);
    route();
  },
  receiveImage(key, detail) {
    state.details[key] = detail;
    const waiting = state.view.waitingFor;
    if (waiting === key) {
      state.view.waitingFor = null;
      showImage(key);
    }
  },
};

/* ---------- routing ---------- */

function parseHash() {
  const hash = location.hash.replace(/^#/, "");
  const [path, query] = hash.split("?");
  return { path: path || "gallery", params: new URLSearchParams(query || "") };
}

function route() {
  const { path, params } = parseHash();
  if (path.startsWith("image/")) {
    $("gallery-view").hidden = true;
    $("image-view").hidden = false;
    openImage(decodeURIComponent(path.slice(6)), params);
  } else {
    $("image-view").hidden = true;
    $("gallery-view").hidden = false;
    applyGalleryParams(params);
    renderGallery();
  }
}

/* ---------- gallery ---------- */

function setUpGallery() {
  const run = state.run;
  const splits = [...new Set(state.entries.map((e) => e.s).filter((s) => s))].sort();
  const split = $("filter-split");
  option(split, "", "all");
  splits.forEach((s) => option(split, s, s));
  for (const id of ["filter-truth", "filter-predicted"]) {
    const select = $(id);
    option(select, "", "all");
    run.classes.forEach((c) => option(select, c, c));
  }
  const sort = $("sort-key");
  option(sort, "", "collection order");
  run.classes.forEach((c, i) => option(sort, `p:${i}`, `probability of ${c}`));
  run.measures.forEach((m) => option(sort, `m:${m.key}`, m.title));
  for (const id of ["filter-split", "filter-truth", "filter-predicted", "filter-outcome", "sort-key", "sort-order"]) {
    $(id).addEventListener("change", () => { state.page = 0; writeGalleryHash(); });
  }
  const links = $("worst-links");
  if (run.measures.length) {
    const first = run.measures[0];
    links.append(`Worst maps by ${first.title}: `);
    run.classes.forEach((c, i) => {
      const a = document.createElement("a");
      a.textContent = c;
      a.className = "worst-link";
      a.href = `#gallery?truth=${encodeURIComponent(c)}&sort=${encodeURIComponent("m:" + first.key)}&order=worst`;
      links.append(a);
      if (i < run.classes.length - 1) links.append(" · ");
    });
  }
  showStatus(`${state.entries.length} images`);
}

function applyGalleryParams(params) {
  $("filter-split").value = params.get("split") || "";
  $("filter-truth").value = params.get("truth") || "";
  $("filter-predicted").value = params.get("predicted") || "";
  $("filter-outcome").value = params.get("outcome") || "";
  $("sort-key").value = params.get("sort") || "";
  $("sort-order").value = params.get("order") || "worst";
  state.page = Number(params.get("page") || 0);
}

function galleryQuery(page) {
  const params = new URLSearchParams();
  const pairs = [["split", "filter-split"], ["truth", "filter-truth"], ["predicted", "filter-predicted"],
    ["outcome", "filter-outcome"], ["sort", "sort-key"], ["order", "sort-order"]];
  for (const [name, id] of pairs) if ($(id).value) params.set(name, $(id).value);
  if (page) params.set("page", page);
  return params.toString();
}

function writeGalleryHash() {
  location.hash = `gallery?${galleryQuery(state.page)}`;
}

function sortValue(entry, key) {
  if (key.startsWith("p:")) {
    const v = entry.p[Number(key.slice(2))];
    return v === undefined ? null : v;
  }
  if (key.startsWith("m:")) {
    const v = entry.m[key.slice(2)];
    return v === undefined ? null : v;
  }
  return null;
}

function higherIsBetter(key) {
  if (key.startsWith("m:")) {
    const m = state.run.measures.find((x) => x.key === key.slice(2));
    return m ? m.higherIsBetter : true;
  }
  return true;
}

function filteredEntries() {
  const split = $("filter-split").value;
  const truth = $("filter-truth").value;
  const predicted = $("filter-predicted").value;
  const outcome = $("filter-outcome").value;
  let list = state.entries.filter((e) =>
    (!split || e.s === split) && (!truth || e.l.includes(truth)) && (!predicted || e.d.includes(predicted)) &&
    (!outcome || e.o.includes(outcome)));
  const key = $("sort-key").value;
  if (key) {
    // "worst first" puts the lowest value first where higher is better; images without a value go last.
    const ascending = ($("sort-order").value === "worst") === higherIsBetter(key);
    list = list.slice().sort((a, b) => {
      const va = sortValue(a, key), vb = sortValue(b, key);
      if (va === null && vb === null) return a.position - b.position;
      if (va === null) return 1;
      if (vb === null) return -1;
      return (ascending ? va - vb : vb - va) || a.position - b.position;
    });
  }
  return list;
}

function renderGallery() {
  state.filtered = filteredEntries();
  const list = state.filtered;
  const pages = Math.max(1, Math.ceil(list.length / PAGE_SIZE));
  state.page = Math.min(Math.max(0, state.page || 0), pages - 1);
  $("match-count").textContent = `${list.length} of ${state.entries.length} images match`;
  const grid = $("grid");
  grid.replaceChildren();
  const key = $("sort-key").value;
  for (const entry of list.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE)) {
    const card = document.createElement("a");
    card.className = "card " + entry.o.join(" ");
    card.href = `#image/${encodeURIComponent(entry.k)}`;
    card.dataset.id = entry.id;
    const img = document.createElement("img");
    img.loading = "lazy";
    img.src = `thumbs/${entry.k}.jpg`;
    img.alt = entry.id;
    const caption = document.createElement("span");
    caption.className = "caption";
    const value = key ? ` · ${fmt(sortValue(entry, key))}` : "";
    caption.textContent = `${entry.id}${value}`;
    const labels = document.createElement("span");
    labels.className = "labels";
    labels.textContent = entry.l.join(", ") + (entry.o.length ? ` [${entry.o.join(", ")}]` : "");
    card.append(img, caption, labels);
    grid.appendChild(card);
  }
  const pager = $("pager");
  pager.replaceChildren();
  if (pages > 1) {
    for (const [text, page] of [["← previous", state.page - 1], ["next →", state.page + 1]]) {
      const a = document.createElement("a");
      a.textContent = text;
      if (page >= 0 && page < pages) a.href = `#gallery?${galleryQuery(page)}`;
      pager.appendChild(a);
    }
    pager.append(` page ${state.page + 1} of ${pages}`);
  }
}

/* ---------- image page ---------- */

function entryByKey(key) {
  return state.entries.find((e) => e.k === key);
}

function openImage(key, params) {
  const entry = entryByKey(key);
  if (!entry) {
    showStatus(`no image ${key} in this run`);
    return;
  }
  state.view = { key, params, waitingFor: null };
  if (!state.filtered.length) state.filtered = filteredEntries();
  if (state.details[key]) showImage(key);
  else {
    state.view.waitingFor = key;
    showStatus(`Loading ${entry.id}…`);
    loadScript(`data/images/${key}.js`);
  }
}

function fillSelect(select, values, texts, chosen) {
  select.replaceChildren();
  values.forEach((v, i) => option(select, v, texts ? texts[i] : v));
  if (values.includes(chosen)) select.value = chosen;
}

function showImage(key) {
  const entry = entryByKey(key);
  const detail = state.details[key];
  const params = state.view.params;
  showStatus(`${state.entries.length} images`);
  $("image-title").textContent = `${entry.id}` + (entry.s ? ` (${entry.s})` : "") +
    (entry.l.length ? ` · shows ${entry.l.join(", ")}` : "") + (entry.o.length ? ` · ${entry.o.join(", ")}` : "");
  const painting = $("painting");
  painting.src = `images/${key}.jpg`;
  painting.alt = entry.id;
  fitStage(entry);
  const svg = $("boxes");
  svg.setAttribute("viewBox", `0 0 ${entry.w} ${entry.h}`);
  const methods = Object.keys(detail.maps);
  fillSelect($("method"), methods, null, params.get("method") || state.view.lastMethod || methods[0]);
  const stored = $("stored");
  const storedNames = Object.keys(detail.stored);
  fillSelect(stored, [""].concat(storedNames), ["none"].concat(storedNames), params.get("stored") ||
    (state.run.kind === "detector" ? storedNames[0] : ""));
  const level = state.run.kind === "detector" ? "figure" : (state.run.levels.includes("attribute") ? "attribute" : "figure");
  $("derive-level").value = params.get("level") || level;
  if (params.get("threshold") !== null) $("threshold").value = params.get("threshold");
  updateTargets(params.get("target"));
  renderProbabilities(entry);
  renderImage();
}

/* The painting as large as the column and the window allow, so small images are enlarged too. */
function fitStage(entry) {
  const column = $("stage").parentElement.clientWidth || 800;
  const scale = Math.min(column / entry.w, (0.85 * window.innerHeight) / entry.h);
  const painting = $("painting");
  painting.style.width = `${Math.max(1, Math.floor(entry.w * scale))}px`;
  painting.style.height = `${Math.max(1, Math.floor(entry.h * scale))}px`;
}

function currentMaps() {
  const detail = state.details[state.view.key];
  return detail ? detail.maps[$("method").value] : undefined;
}

function updateTargets(chosen) {
  const maps = currentMaps();
  const entry = entryByKey(state.view.key);
  const targets = maps ? maps.targets : state.run.classes;
  const preferred = chosen || state.view.lastTarget || entry.l.find((l) => targets.includes(l)) || targets[0];
  fillSelect($("target"), targets, null, preferred);
}

function decodeMaps(method, maps, done) {
  const cacheKey = `${state.view.key}|${method}`;
  if (state.decoded[cacheKey]) {
    done(state.decoded[cacheKey]);
    return;
  }
  const img = new Image();
  img.onload = () => {
    const canvas = document.createElement("canvas");
    canvas.width = maps.w;
    canvas.height = maps.h * maps.targets.length;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(img, 0, 0);
    const rgba = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const values = new Uint8Array(canvas.width * canvas.height);
    for (let i = 0; i < values.length; i++) values[i] = rgba[4 * i];
    state.decoded[cacheKey] = values;
    done(values);
  };
  img.src = maps.src;
}

/* The map of one target upsampled to the working grid and scaled to [0, 1] (see viewer_saliency). */
function sourceIndex(outSize, inSize) {
  const scale = inSize / outSize;
  const low = new Int32Array(outSize), high = new Int32Array(outSize);
  const w0 = new Float64Array(outSize), w1 = new Float64Array(outSize);
  for (let i = 0; i < outSize; i++) {
    let src = scale * (i + 0.5) - 0.5;
    if (src < 0) src = 0;
    let lo = Math.floor(src);
    if (lo > inSize - 1) lo = inSize - 1;
    low[i] = lo;
    high[i] = lo < inSize - 1 ? lo + 1 : lo;
    w1[i] = src - lo;
    w0[i] = 1.0 - w1[i];
  }
  return { low, high, w0, w1 };
}

function saliencyOf(values, offset, w, h, width, height) {
  const ys = sourceIndex(height, h), xs = sourceIndex(width, w);
  const up = new Float64Array(width * height);
  let lo = Infinity, hi = -Infinity;
  for (let y = 0; y < height; y++) {
    const r0 = offset + ys.low[y] * w, r1 = offset + ys.high[y] * w;
    for (let x = 0; x < width; x++) {
      const top = values[r0 + xs.low[x]] * xs.w0[x] + values[r0 + xs.high[x]] * xs.w1[x];
      const bottom = values[r1 + xs.low[x]] * xs.w0[x] + values[r1 + xs.high[x]] * xs.w1[x];
      const v = top * ys.w0[y] + bottom * ys.w1[y];
      up[y * width + x] = v;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  if (!(hi > lo)) return up.fill(0);
  const span = hi - lo;
  for (let i = 0; i < up.length; i++) up[i] = (up[i] - lo) / span;
  return up;
}

/* Boxes around the foreground (value >= threshold), as boxes_from_map: one around all of it (figure), or one
 * per 8-connected component whose mean is at least half the mean of all components' means (attribute). */
function boxesFromMap(sal, width, height, level, threshold) {
  const mask = new Uint8Array(sal.length);
  let any = false;
  for (let i = 0; i < sal.length; i++) if (sal[i] >= threshold) { mask[i] = 1; any = true; }
  if (!any) return [];
  if (level === "figure") {
    let x0 = width, y0 = height, x1 = -1, y1 = -1, sum = 0, n = 0;
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
      const i = y * width + x;
      if (!mask[i]) continue;
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
      sum += sal[i]; n++;
    }
    return [{ x0, y0, x1: x1 + 1, y1: y1 + 1, mean: sum / n }];
  }
  const labels = new Int32Array(sal.length);
  const stack = new Int32Array(sal.length);
  const comps = [];
  for (let start = 0; start < sal.length; start++) {
    if (!mask[start] || labels[start]) continue;
    const label = comps.length + 1;
    const c = { x0: width, y0: height, x1: -1, y1: -1, area: 0, sum: 0 };
    let top = 0;
    stack[top++] = start;
    labels[start] = label;
    while (top) {
      const i = stack[--top];
      const x = i % width, y = (i - x) / width;
      c.area++;
      if (x < c.x0) c.x0 = x; if (x > c.x1) c.x1 = x; if (y < c.y0) c.y0 = y; if (y > c.y1) c.y1 = y;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= width) continue;
          const j = yy * width + xx;
          if (mask[j] && !labels[j]) { labels[j] = label; stack[top++] = j; }
        }
      }
    }
    comps.push(c);
  }
  // Sums in raster order, as numpy's bincount adds them.
  for (let i = 0; i < sal.length; i++) if (labels[i]) comps[labels[i] - 1].sum += sal[i];
  const means = comps.map((c) => c.sum / c.area);
  let total = 0;
  for (const m of means) total += m;
  const cut = 0.5 * (total / means.length);
  return comps.filter((c, k) => means[k] >= cut)
    .map((c, k) => ({ x0: c.x0, y0: c.y0, x1: c.x1 + 1, y1: c.y1 + 1, mean: c.sum / c.area }));
}

function jet(v) {
  const clamp = (x) => Math.max(0, Math.min(1, x));
  return [clamp(1.5 - Math.abs(4 * v - 3)), clamp(1.5 - Math.abs(4 * v - 2)), clamp(1.5 - Math.abs(4 * v - 1))];
}

function paintHeat(canvas, sal, width, height, opacity, threshold) {
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const image = ctx.createImageData(width, height);
  const alpha = Math.round(255 * opacity);
  for (let i = 0; i < sal.length; i++) {
    const [r, g, b] = jet(sal[i]);
    image.data[4 * i] = Math.round(255 * r);
    image.data[4 * i + 1] = Math.round(255 * g);
    image.data[4 * i + 2] = Math.round(255 * b);
    image.data[4 * i + 3] = sal[i] >= threshold ? alpha : 0;
  }
  ctx.putImageData(image, 0, 0);
}

function targetSaliency(method, maps, values, targetIndex, width, height) {
  const cacheKey = `${state.view.key}|${method}|${targetIndex}`;
  if (!state.saliency[cacheKey]) {
    state.saliency[cacheKey] = saliencyOf(values, targetIndex * maps.w * maps.h, maps.w, maps.h, width, height);
  }
  return state.saliency[cacheKey];
}

function svgRect(svg, box, cls, title, extra) {
  const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
  rect.setAttribute("x", box[0]);
  rect.setAttribute("y", box[1]);
  rect.setAttribute("width", Math.max(0, box[2] - box[0]));
  rect.setAttribute("height", Math.max(0, box[3] - box[1]));
  rect.setAttribute("class", cls);
  for (const [k, v] of Object.entries(extra || {})) rect.setAttribute(k, v);
  const t = document.createElementNS("http://www.w3.org/2000/svg", "title");
  t.textContent = title;
  rect.appendChild(t);
  svg.appendChild(rect);
}

function targetClass(target) {
  // Classifier targets are classes; detector targets are "kind: class (score)".
  if (state.run.kind !== "detector") return target;
  const m = /^[^:]*: (.*?)( \([0-9.]+\))?$/.exec(target);
  return m ? m[1] : target;
}

function renderImage() {
  const key = state.view.key;
  const entry = entryByKey(key);
  const detail = state.details[key];
  const method = $("method").value;
  const target = $("target").value;
  const threshold = Number($("threshold").value);
  const opacity = Number($("opacity").value);
  state.view.lastMethod = method;
  state.view.lastTarget = target;
  $("threshold-value").textContent = threshold.toFixed(2);
  $("opacity-value").textContent = opacity.toFixed(2);
  const svg = $("boxes");
  svg.replaceChildren();
  const cls = targetClass(target);
  if ($("show-expert").checked) {
    for (const b of detail.expert) {
      const owner = b[6] !== undefined ? b[6] : b[4];
      if (owner === cls || state.run.kind === "detector") svgRect(svg, b, "expert", `expert: ${b[4]}`);
    }
  }
  const storedName = $("stored").value;
  if (storedName) {
    for (const b of detail.stored[storedName] || []) {
      if (state.run.kind === "detector" || b[4] === cls) svgRect(svg, b, "stored", `${storedName}: ${b[4]} ${b[5]}`);
    }
  }
  const maps = detail.maps[method];
  const overlay = $("overlay");
  if (!maps) {
    overlay.width = overlay.height = 1;
    $("derived-summary").textContent = "This image has no maps.";
    renderMeasures(entry, detail, target);
    return;
  }
  const index = maps.targets.indexOf(target);
  if (maps.boxes && maps.boxes[index]) svgRect(svg, maps.boxes[index], "explained", `explained box: ${target}`);
  decodeMaps(method, maps, (values) => {
    if (state.view.key !== key || $("method").value !== method || $("target").value !== target) return;
    const sal = targetSaliency(method, maps, values, index, entry.gw, entry.gh);
    paintHeat(overlay, sal, entry.gw, entry.gh, opacity, threshold);
    overlay.dataset.method = method;
    overlay.dataset.target = target;
    const level = $("derive-level").value;
    const derived = boxesFromMap(sal, entry.gw, entry.gh, level, threshold);
    const sx = entry.w / entry.gw, sy = entry.h / entry.gh;
    if ($("show-derived").checked) {
      for (const b of derived) {
        svgRect(svg, [b.x0 * sx, b.y0 * sy, b.x1 * sx, b.y1 * sy], "derived",
          `derived at ${threshold.toFixed(2)}: mean activation ${fmt(b.mean)}`,
          { "data-grid": `${b.x0} ${b.y0} ${b.x1} ${b.y1}` });
      }
    }
    $("derived-summary").textContent = `${derived.length} box(es) derived from the map at threshold ` +
      `${threshold.toFixed(2)} on a ${entry.gw} x ${entry.gh} grid.`;
    overlay.dataset.ready = `${method}|${target}|${threshold}|${level}`;
    renderMethodsRow(entry, detail, target);
  });
  renderMeasures(entry, detail, target);
}

function renderMethodsRow(entry, detail, target) {
  const row = $("methods-row");
  row.replaceChildren();
  for (const [method, maps] of Object.entries(detail.maps)) {
    const index = maps.targets.indexOf(target);
    if (index < 0) continue;
    const figure = document.createElement("figure");
    figure.className = "method-cell" + (method === $("method").value ? " chosen" : "");
    const holder = document.createElement("div");
    holder.className = "mini-stage";
    const img = document.createElement("img");
    img.src = `thumbs/${entry.k}.jpg`;
    const canvas = document.createElement("canvas");
    holder.append(img, canvas);
    const caption = document.createElement("figcaption");
    caption.textContent = method;
    figure.append(holder, caption);
    figure.addEventListener("click", () => { $("method").value = method; updateTargets(target); renderImage(); });
    row.appendChild(figure);
    decodeMaps(method, maps, (values) => {
      const sal = targetSaliency(method, maps, values, index, entry.gw, entry.gh);
      paintHeat(canvas, sal, entry.gw, entry.gh, 0.6, 0);
    });
  }
}

function renderProbabilities(entry) {
  const table = $("probabilities");
  table.replaceChildren();
  $("probabilities-title").textContent = state.run.kind === "detector" ? "Best detection score per class" :
    "Class probabilities";
  if (!entry.p.length) {
    table.innerHTML = "<tr><td>The run holds no predictions for this image.</td></tr>";
    return;
  }
  const head = document.createElement("tr");
  head.innerHTML = "<th>class</th><th>probability</th><th></th>";
  table.appendChild(head);
  state.run.classes.forEach((c, i) => {
    const tr = document.createElement("tr");
    const shown = entry.l.includes(c), claimed = entry.d.includes(c);
    tr.className = (shown ? "shown " : "") + (claimed ? "claimed" : "");
    const bar = `<span class="bar" style="width:${Math.round(100 * entry.p[i])}px"></span>`;
    tr.innerHTML = `<td></td><td>${fmt(entry.p[i])} ${bar}</td><td>${shown ? "shown" : ""}${shown && claimed ? ", " : ""}` +
      `${claimed ? "predicted" : ""}</td>`;
    tr.firstChild.textContent = c;
    table.appendChild(tr);
  });
}

function renderMeasures(entry, detail, target) {
  const table = $("measures");
  table.replaceChildren();
  const perTarget = detail.targetMeasures[target] || {};
  // A classifier's measures are per method: show the chosen method's.
  const method = $("method").value;
  const rows = state.run.measures.filter((m) => (entry.m[m.key] !== undefined || perTarget[m.key] !== undefined) &&
    (state.run.kind === "detector" || m.key.startsWith(`${method}:`)));
  if (!rows.length) {
    table.innerHTML = "<tr><td>No measures for this image (no expert boxes of its classes, or none computed).</td></tr>";
    return;
  }
  const head = document.createElement("tr");
  head.innerHTML = `<th>measure</th><th>this class</th><th>image (mean)</th>`;
  table.appendChild(head);
  for (const m of rows) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td></td><td>${fmt(perTarget[m.key])}</td><td>${fmt(entry.m[m.key])}</td>`;
    tr.firstChild.textContent = `${m.title} (${m.higherIsBetter ? "higher" : "lower"} is better)`;
    table.appendChild(tr);
  }
}

function step(delta) {
  const list = state.filtered.length ? state.filtered : state.entries;
  const at = list.findIndex((e) => e.k === state.view.key);
  const next = list[(at + delta + list.length) % list.length];
  if (next) location.hash = `image/${encodeURIComponent(next.k)}`;
}

function setUpImageControls() {
  $("method").addEventListener("change", () => { updateTargets($("target").value); renderImage(); });
  for (const id of ["target", "threshold", "opacity", "show-expert", "show-derived", "derive-level", "stored"]) {
    $(id).addEventListener("input", renderImage);
    $(id).addEventListener("change", renderImage);
  }
  $("previous").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("back").addEventListener("click", (event) => {
    event.preventDefault();
    location.hash = `gallery?${galleryQuery(state.page)}`;
  });
}

setUpImageControls();
window.addEventListener("resize", () => { const e = state.view.key && entryByKey(state.view.key); if (e) fitStage(e); });
