/* The map viewer of DESIGN.md §6: layers, legend, field outlines with statistics, swipe. */
(function () {
  "use strict";
  var batch = document.body.dataset.batch;
  var map = L.map("map", { zoomControl: true, attributionControl: false });
  var current = null, previousLayer = null, data = null, swipeOn = false;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function fmt(v, digits) {
    return (v === null || v === undefined) ? "–" : Number(v).toFixed(digits === undefined ? 3 : digits);
  }
  function tileUrl(id, layer) {
    return "/tiles/" + encodeURIComponent(id) + "/" + encodeURIComponent(layer) + "/{z}/{x}/{y}.png";
  }

  function showLegend(layer) {
    var box = document.getElementById("legend");
    box.textContent = "";
    box.dataset.layer = layer.name;
    box.appendChild(el("h2", null, layer.title + (layer.unit ? " (" + layer.unit + ")" : "")));
    if (layer.scale) {
      var bar = el("div", "bar");
      var stops = layer.legend.map(function (s, i) {
        return s.color + " " + (100 * i / (layer.legend.length - 1)) + "%";
      });
      bar.style.background = "linear-gradient(to right, " + stops.join(", ") + ")";
      box.appendChild(bar);
      var labels = el("div", "labels");
      layer.legend.forEach(function (s) { labels.appendChild(el("span", null, fmt(s.value, 2))); });
      box.appendChild(labels);
      box.appendChild(el("p", "scale", layer.scale.ramp + ", " + fmt(layer.scale.vmin, 2) +
                         " … " + fmt(layer.scale.vmax, 2)));
    } else {
      box.appendChild(el("p", "scale", "Classes " + (layer.classes || []).join(", ") +
                         " (1 = lowest vigour)"));
    }
  }

  function clipPrevious() {
    if (!previousLayer || !swipeOn) { return; }
    var slider = document.getElementById("swipe-range");
    var size = map.getSize();
    var x = size.x * Number(slider.value) / 100;
    var nw = map.containerPointToLayerPoint([0, 0]);
    var se = map.containerPointToLayerPoint(size);
    var clipX = nw.x + x;
    previousLayer.getContainer().style.clip =
      "rect(" + [nw.y, clipX, se.y, nw.x].join("px,") + "px)";
  }

  function setPrevious(name) {
    if (previousLayer) { map.removeLayer(previousLayer); previousLayer = null; }
    var bar = document.getElementById("swipe-bar");
    if (bar) { bar.hidden = true; }
    if (!swipeOn || !data.previous || data.previous.layers.indexOf(name) < 0) { return; }
    previousLayer = L.tileLayer(tileUrl(data.previous.batch_id, name),
                                { pane: "previous", maxZoom: 24, maxNativeZoom: 22 }).addTo(map);
    previousLayer.on("load", clipPrevious);
    bar.hidden = false;
    clipPrevious();
  }

  function setLayer(layer) {
    if (current) { map.removeLayer(current); }
    current = L.tileLayer(tileUrl(batch, layer.name), { maxZoom: 24, maxNativeZoom: 22 });
    current.addTo(map);
    showLegend(layer);
    setPrevious(layer.name);
  }

  function showField(name) {
    var stats = data.field_stats[name] || {};
    var box = document.getElementById("field");
    box.textContent = "";
    box.appendChild(el("h2", null, name));
    var table = el("table");
    function row(k, v) {
      var tr = el("tr"); tr.appendChild(el("th", null, k)); tr.appendChild(el("td", null, v));
      table.appendChild(tr);
    }
    row("Area", fmt(stats.area, 2) + " " + data.area_unit);
    Object.keys(stats.indices || {}).forEach(function (k) { row(k.toUpperCase() + " mean", fmt(stats.indices[k])); });
    if (stats.thermal) { row("Mean °C", fmt(stats.thermal.mean_c, 1)); }
    if (stats.canopy_cover !== null && stats.canopy_cover !== undefined) {
      row("Canopy cover", fmt(100 * stats.canopy_cover, 1) + " %");
    }
    Object.keys(stats.change || {}).forEach(function (k) { row("Δ " + k.toUpperCase(), fmt(stats.change[k])); });
    box.appendChild(table);
  }

  function start(d) {
    data = d;
    map.createPane("previous");
    map.getPane("previous").style.zIndex = 250;
    if (d.basemap_url) { L.tileLayer(d.basemap_url, { maxZoom: 22 }).addTo(map); }
    var b = d.bounds_4326;
    if (b) { map.fitBounds([[b[1], b[0]], [b[3], b[2]]]); } else { map.setView([0, 0], 2); }
    var box = document.getElementById("layers");
    d.layers.forEach(function (layer, i) {
      var label = el("label");
      var input = el("input");
      input.type = "radio"; input.name = "layer"; input.value = layer.name;
      input.addEventListener("change", function () { setLayer(layer); });
      if (i === 0) { input.checked = true; }
      label.appendChild(input);
      label.appendChild(document.createTextNode(" " + layer.title));
      box.appendChild(label);
    });
    if (d.layers.length) { setLayer(d.layers[0]); }
    if (d.fields) {
      L.geoJSON(d.fields, {
        style: function () { return { color: "#1f3bff", weight: 2, fill: true, fillOpacity: 0 }; },
        onEachFeature: function (f, lyr) {
          lyr.on("click", function () { showField(f.properties.name); });
        }
      }).addTo(map);
    }
    if (d.previous) {
      var control = document.getElementById("swipe-control");
      control.hidden = false;
      document.getElementById("previous").textContent = d.previous.batch_id;
      var bar = el("div", "swipe-bar"); bar.id = "swipe-bar"; bar.hidden = true;
      var range = el("input"); range.type = "range"; range.id = "swipe-range";
      range.min = 0; range.max = 100; range.value = 50;
      range.addEventListener("input", clipPrevious);
      bar.appendChild(range);
      document.body.appendChild(bar);
      document.getElementById("swipe").addEventListener("change", function (e) {
        swipeOn = e.target.checked;
        var checked = document.querySelector("input[name=layer]:checked");
        setPrevious(checked ? checked.value : "");
      });
      map.on("move zoom", clipPrevious);
    }
  }

  fetch("/map/" + encodeURIComponent(batch) + "/data.json", { credentials: "same-origin" })
    .then(function (r) {
      // The session ended: the service redirected to its sign-in page (DESIGN.md §6); go there.
      if (r.redirected && new URL(r.url).pathname === "/login") {
        window.location.assign(r.url);
        return null;
      }
      if (!r.ok) { throw new Error("data.json: " + r.status); }
      return r.json();
    })
    .then(function (data) { if (data) { start(data); } })
    .catch(function (e) { document.getElementById("legend").textContent = String(e); });
})();
