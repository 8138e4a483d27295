// The grid map: the project's own grid polygons and the cases on them, coloured by their
// SLA state. No tile layer: nothing is fetched from outside the console.
(function () {
  "use strict";
  var element = document.getElementById("map");
  if (!element || !window.L) { return; }
  var colours = {breached: "#c62828", warned: "#ef8f00", on_time: "#2e7d32",
                 paused: "#6d6d6d", backlog: "#6a1b9a", done: "#1565c0"};
  var names = {breached: "已超期", warned: "预警", on_time: "正常", paused: "暂停", backlog: "挂账",
               done: "已办结"};
  var map = L.map(element, {attributionControl: false, zoomSnap: 0.25});
  var grids = L.geoJSON(null, {
    style: {color: "#546e7a", weight: 1, fillColor: "#eceff1", fillOpacity: 0.5},
    onEachFeature: function (f, layer) { layer.bindTooltip(f.properties.name); }
  }).addTo(map);
  var cases = L.layerGroup().addTo(map);
  var list = document.getElementById("map-list");

  function load(url) { return fetch(url, {credentials: "same-origin"}).then(function (r) { return r.json(); }); }

  function drawCases(data) {
    cases.clearLayers();
    list.textContent = "";
    data.features.forEach(function (f) {
      var p = f.properties, c = f.geometry.coordinates;
      var marker = L.circleMarker([c[1], c[0]], {radius: 7, color: "#fff", weight: 2,
        fillColor: colours[p.sla] || "#000", fillOpacity: 0.95, className: "case-marker sla-" + p.sla});
      marker.bindPopup('<a href="/cases/' + encodeURIComponent(p.case_id) + '">' + p.case_id +
                       "</a><br>" + p.matter + " · " + (names[p.sla] || p.sla));
      marker.addTo(cases);
      var item = document.createElement("li");
      item.dataset.case = p.case_id;
      item.dataset.sla = p.sla;
      item.textContent = p.case_id + " " + p.matter + " " + (names[p.sla] || p.sla);
      list.appendChild(item);
    });
  }

  load(element.dataset.grids).then(function (data) {
    grids.addData(data);
    if (grids.getLayers().length) { map.fitBounds(grids.getBounds()); } else { map.setView([30.27, 120.0], 11); }
    return load(element.dataset.cases);
  }).then(drawCases);
  document.body.addEventListener("sse:case", function () { load(element.dataset.cases).then(drawCases); });
  document.body.addEventListener("sse:escalation", function () { load(element.dataset.cases).then(drawCases); });
})();
