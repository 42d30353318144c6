// The explorer page's script (inspectlab/render/explorer.py): levels, pan and zoom, selection, side panel,
// search, sortable layer table. Reads its data from the inline JSON; fetches nothing.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("explorer-data").textContent);
  const graph = document.getElementById("graph");
  const panel = document.getElementById("panel");
  const search = document.getElementById("search");
  const status = document.getElementById("status");
  const SVGNS = "http://www.w3.org/2000/svg";
  const MIN_SCALE = 0.75; // pixels per point below which the first view shows the top at this scale, not all
  const levels = {}; // depth -> {element, svg, data, view: [x, y, w, h], natural: [x, y, w, h]}
  for (const level of data.levels) {
    const element = graph.querySelector('.level[data-depth="' + level.depth + '"]');
    const svg = element.querySelector("svg");
    const box = svg.viewBox.baseVal;
    levels[level.depth] = {element: element, svg: svg, data: level, view: null,
                           natural: [box.x, box.y, box.width, box.height]};
    for (const group of svg.querySelectorAll("g[data-id]")) {
      const key = level.nodes[group.dataset.id] || level.frames[group.dataset.id];
      const entity = key && data.entities[key];
      if (entity) {
        const title = document.createElementNS(SVGNS, "title");
        title.textContent = entity.title + (entity.name && entity.name !== entity.title ? " · " + entity.name : "");
        group.insertBefore(title, group.firstChild);
      }
    }
  }
  let depth = null;
  let selected = null;

  // views: pan and zoom by the viewBox -----------------------------------------------------------------
  function size() { return [Math.max(graph.clientWidth, 1), Math.max(graph.clientHeight, 1)]; }
  function setView(level, view) {
    level.view = view;
    level.svg.setAttribute("viewBox", view.map(function (v) { return v.toFixed(2); }).join(" "));
  }
  function fit(level) {
    const [cw, ch] = size();
    const [x, y, w, h] = level.natural;
    let scale = Math.min(cw / w, ch / h);
    if (scale >= MIN_SCALE) {
      scale = Math.min(scale, 1.6); // a small drawing: all of it, not blown up
      setView(level, [x + w / 2 - cw / scale / 2, y + h / 2 - ch / scale / 2, cw / scale, ch / scale]);
      return;
    }
    scale = Math.max(Math.min(cw / w, 1), MIN_SCALE); // the top of a tall or wide drawing, readable
    const input = level.data.boxes.in0;
    const centre = cw / scale >= w || !input ? x + w / 2 : input[0] + input[2] / 2;
    setView(level, [centre - cw / scale / 2, y, cw / scale, ch / scale]);
  }
  function scaleOf(level) { return size()[0] / level.view[2]; }
  function centreOn(level, id) {
    const box = level.data.boxes[id];
    if (!box) return;
    const [cw, ch] = size();
    let scale = scaleOf(level);
    const needed = Math.min(cw / (box[2] + 40), ch / (box[3] + 40));
    if (needed < scale) scale = Math.max(needed, 0.05); // zoom out until the element fits
    setView(level, [box[0] + box[2] / 2 - cw / scale / 2, box[1] + box[3] / 2 - ch / scale / 2, cw / scale,
                    ch / scale]);
  }
  function visible(level, id) {
    const box = level.data.boxes[id];
    const view = level.view;
    return box && box[0] >= view[0] && box[1] >= view[1] && box[0] + box[2] <= view[0] + view[2] &&
      box[1] + box[3] <= view[1] + view[3];
  }
  graph.addEventListener("wheel", function (event) {
    event.preventDefault();
    const level = levels[depth];
    const rect = graph.getBoundingClientRect();
    const [x, y, w, h] = level.view;
    const fx = (event.clientX - rect.left) / rect.width, fy = (event.clientY - rect.top) / rect.height;
    const factor = Math.exp(event.deltaY * 0.0015);
    const nw = Math.min(Math.max(w * factor, rect.width / 8), rect.width / 0.02);
    const nh = nw * h / w;
    setView(level, [x + fx * (w - nw), y + fy * (h - nh), nw, nh]);
  }, {passive: false});
  let drag = null;
  let dragged = false;
  graph.addEventListener("pointerdown", function (event) {
    if (event.button !== 0) return;
    drag = {x: event.clientX, y: event.clientY, view: levels[depth].view.slice()};
    dragged = false;
  });
  window.addEventListener("pointermove", function (event) {
    if (!drag) return;
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (!dragged && Math.abs(dx) + Math.abs(dy) < 4) return;
    if (!dragged) { dragged = true; graph.classList.add("dragging"); }
    const level = levels[depth];
    const units = drag.view[2] / graph.clientWidth;
    setView(level, [drag.view[0] - dx * units, drag.view[1] - dy * units, drag.view[2], drag.view[3]]);
  });
  window.addEventListener("pointerup", function () { drag = null; graph.classList.remove("dragging"); });
  window.addEventListener("resize", function () { if (depth !== null) fit(levels[depth]); });

  // levels -----------------------------------------------------------------------------------------------
  function show(next, focus) {
    const level = levels[next];
    if (!level) return;
    for (const other of Object.values(levels)) other.element.hidden = other !== level;
    depth = next;
    if (!level.view) fit(level);
    for (const button of document.querySelectorAll("button[data-level]")) {
      button.setAttribute("aria-pressed", String(Number(button.dataset.level) === next));
    }
    if (focus && level.data.holders[focus]) centreOn(level, level.data.holders[focus]);
    highlight(false);
  }
  for (const button of document.querySelectorAll("button[data-level]")) {
    button.addEventListener("click", function () { show(Number(button.dataset.level), selected); });
  }
  document.getElementById("fit").addEventListener("click", function () { fit(levels[depth]); });
  function keyOf(group) {
    const level = levels[depth].data;
    return level.nodes[group.dataset.id] || level.frames[group.dataset.id] || null;
  }
  function expand(key) {
    const entity = data.entities[key];
    if (entity && entity.expands && depth < data.deepest) show(depth + 1, key);
  }
  function collapse(key) {
    const entity = data.entities[key];
    if (entity && entity.depth !== null && entity.depth < depth) show(entity.depth, key);
  }
  graph.addEventListener("click", function (event) {
    if (dragged) { dragged = false; return; }
    const group = event.target.closest("g.node, g.cluster");
    if (group && keyOf(group)) select(keyOf(group), {scroll: true});
  });
  graph.addEventListener("dblclick", function (event) {
    const group = event.target.closest("g.node, g.cluster");
    if (!group || !keyOf(group)) return;
    if (group.classList.contains("cluster")) collapse(keyOf(group)); else expand(keyOf(group));
  });

  // selection and the panel ------------------------------------------------------------------------------
  function highlight(centre) {
    const level = levels[depth];
    for (const group of level.svg.querySelectorAll("g.selected")) group.classList.remove("selected");
    const id = selected && level.data.holders[selected];
    if (!id) return;
    const group = level.svg.querySelector('g[data-id="' + id + '"]');
    if (group) group.classList.add("selected");
    if (centre && !visible(level, id)) centreOn(level, id);
  }
  function button(text, action) {
    const element = document.createElement("button");
    element.type = "button";
    element.textContent = text;
    element.addEventListener("click", action);
    return element;
  }
  function renderPanel(key) {
    const entity = data.entities[key];
    panel.replaceChildren();
    const heading = document.createElement("h2");
    heading.textContent = entity.title;
    const sub = document.createElement("div");
    sub.className = "sub";
    sub.textContent = entity.name;
    const facts = document.createElement("dl");
    for (const [label, text] of entity.facts) {
      const term = document.createElement("dt");
      term.textContent = label;
      const value = document.createElement("dd");
      value.dataset.fact = label;
      value.textContent = text;
      facts.append(term, value);
    }
    panel.append(heading, sub, facts);
    const actions = document.createElement("div");
    actions.className = "actions";
    if (entity.expands && depth < data.deepest && levels[depth].data.nodes[levels[depth].data.holders[key]] === key) {
      actions.append(button("open (depth " + (depth + 1) + ")", function () { expand(key); }));
    }
    if (entity.depth !== null && entity.depth < depth && levels[depth].data.frames[levels[depth].data.holders[key]]) {
      actions.append(button("close (depth " + entity.depth + ")", function () { collapse(key); }));
    }
    if (actions.childElementCount) panel.append(actions);
  }
  function select(key, options) {
    if (!data.entities[key]) return;
    selected = key;
    renderPanel(key);
    highlight(Boolean(options && options.centre));
    for (const row of rows) {
      const chosen = row.dataset.key === key;
      row.classList.toggle("selected", chosen);
      if (chosen && options && options.scroll) row.scrollIntoView({block: "nearest"});
    }
  }
  function goTo(key) {
    // show the entity itself: on the level of its depth when the current one shows only an ancestor of it
    const entity = data.entities[key];
    const level = levels[depth].data;
    const own = level.nodes[level.holders[key]] === key || level.frames[level.holders[key]] === key;
    if (!own && entity.depth !== null) show(Math.min(entity.depth, data.deepest));
    select(key, {centre: true, scroll: true});
  }

  // search -----------------------------------------------------------------------------------------------
  const names = data.table.rows.map(function (row) { return row.key; });
  const list = document.getElementById("names");
  for (const name of names) {
    const option = document.createElement("option");
    option.value = name;
    list.append(option);
  }
  function find(text) {
    const query = text.trim().toLowerCase();
    if (!query) return null;
    return names.find(function (n) { return n.toLowerCase() === query; }) ||
      names.find(function (n) { return n.toLowerCase().startsWith(query); }) ||
      names.find(function (n) { return n.toLowerCase().includes(query); }) || null;
  }
  function searched() {
    const key = find(search.value);
    status.textContent = key ? "" : (search.value.trim() ? "no module matches " + JSON.stringify(search.value) : "");
    if (key) goTo(key);
  }
  search.addEventListener("keydown", function (event) { if (event.key === "Enter") searched(); });
  search.addEventListener("change", searched);

  // the layer table ----------------------------------------------------------------------------------------
  const table = document.getElementById("layers");
  const head = document.createElement("tr");
  data.table.columns.forEach(function (column, index) {
    const cell = document.createElement("th");
    cell.textContent = column.header;
    if (column.numeric) cell.className = "num";
    cell.addEventListener("click", function () { sortBy(index, cell); });
    head.append(cell);
  });
  table.tHead.append(head);
  const rows = data.table.rows.map(function (row) {
    const line = document.createElement("tr");
    line.dataset.key = row.key;
    row.cells.forEach(function (cell, index) {
      const item = document.createElement("td");
      item.textContent = cell[1];
      if (data.table.columns[index].numeric) item.className = "num";
      line.append(item);
    });
    line.addEventListener("click", function () { goTo(row.key); });
    return line;
  });
  const values = {};
  data.table.rows.forEach(function (row) { values[row.key] = row.cells; });
  table.tBodies[0].append.apply(table.tBodies[0], rows);
  function sortBy(index, cell) {
    const descending = cell.getAttribute("aria-sort") !== "descending";
    for (const other of head.children) other.removeAttribute("aria-sort");
    cell.setAttribute("aria-sort", descending ? "descending" : "ascending");
    const sign = descending ? -1 : 1;
    const sorted = rows.slice().sort(function (a, b) {
      const x = values[a.dataset.key][index][0], y = values[b.dataset.key][index][0];
      if (x === y) return 0;
      if (x === null || x === "") return 1; // unknown values last, either way
      if (y === null || y === "") return -1;
      return (x < y ? -1 : 1) * sign;
    });
    table.tBodies[0].append.apply(table.tBodies[0], sorted);
  }

  show(data.initial);
  document.body.dataset.ready = "true";
})();
