// Draws every chart of the report, then writes into the page (#render-summary, and
// window.__report) what each chart drew, counted in the SVG plotly made, so that a test or a
// curious user can compare it with the data. Errors are shown in the page (#render-errors).
(function () {
  var charts = JSON.parse(document.getElementById("chart-data").textContent);
  var errors = [];
  window.addEventListener("error", function (e) { errors.push(String(e.message)); });
  function count(el, sel) { return el.querySelectorAll(sel).length; }
  function drawn(el, spec) {
    if (spec.empty) return {empty: true};
    var parc = el.querySelector(".parcoords");
    return {
      // markers of scatter traces and the points of box/strip plots
      points: count(el, ".scatterlayer .trace .points path.point") + count(el, ".boxlayer .trace .points path.point"),
      bars: count(el, ".barlayer .trace .point path"),
      // line traces: scatter lines, or one polyline per trial in the parallel coordinates
      lines: count(el, ".scatterlayer .trace path.js-line") +
             (parc ? (el._fullData[0].dimensions[0].values || []).length : 0),
      dimensions: parc ? count(el, ".parcoords g.y-axis") : 0
    };
  }
  var jobs = charts.map(function (spec) {
    var el = document.getElementById("chart-" + spec.id);
    if (spec.empty) { return Promise.resolve([spec, el]); }
    return Plotly.newPlot(el, spec.data, spec.layout,
                          {responsive: true, displaylogo: false}).then(function () { return [spec, el]; });
  });
  Promise.all(jobs).then(function (done) {
    var summary = {};
    done.forEach(function (d) { summary[d[0].id] = {expect: d[0].expect, drawn: drawn(d[1], d[0])}; });
    window.__report = {charts: summary, errors: errors};
    document.getElementById("render-summary").textContent = JSON.stringify(window.__report);
    document.body.setAttribute("data-rendered", "yes");
  }).catch(function (e) {
    errors.push(String(e && e.stack || e));
    document.getElementById("render-errors").textContent = errors.join("\n");
    document.body.setAttribute("data-rendered", "failed");
  });
})();
