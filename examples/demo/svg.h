// The one SVG line-plot writer of the examples (header only, no dependencies beyond fmt).
//
//   svg::Plot p;
//   p.title = "finite-difference error";
//   p.x = {.label = "step eps", .log = true};
//   p.y = {.label = "max abs error", .log = true};
//   p.series.push_back({.label = "float64", .x = xs, .y = ys});
//   p.save("plot.svg");                       // or p.to_svg() for the text
//
// Line series with optional markers, linear or log10 axes, title, axis labels, a legend
// outside the plotting area (so it never hides a curve), grid lines at the ticks. Points that
// cannot be drawn (NaN, infinite, or <= 0 on a log axis) break the line instead of failing.
// demo::svg_line_plot (the older call of the training demos) draws through the same writer.
#pragma once
#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace svg {

struct Axis {
  std::string label = {};
  bool log = false;  // log10 scale; only positive values are drawn
  // Fixed range (in data units); when lo >= hi the range is fitted to the data.
  double lo = 0, hi = 0;
  // Tick positions in data units, labelled as numbers; empty: chosen from the range.
  std::vector<double> ticks = {};
};

struct Series {
  std::string label = {};
  std::vector<double> x = {}, y = {};
  std::string color = {};  // empty: next colour of the palette
  bool markers = true;  // a dot at every point
  bool dashed = false;
};

struct Plot {
  std::string title;
  Axis x, y;
  std::vector<Series> series;
  int width = 720, height = 440;

  std::string to_svg() const;
  bool save(const std::string& path) const {
    std::ofstream out(path);
    out << to_svg();
    return static_cast<bool>(out);
  }
};

namespace detail {

inline bool drawable(double v, bool log) { return std::isfinite(v) && (!log || v > 0); }

// Escape the five XML special characters of a label.
inline std::string xml(const std::string& s) {
  std::string r;
  for (char c : s) {
    switch (c) {
      case '&': r += "&amp;"; break;
      case '<': r += "&lt;"; break;
      case '>': r += "&gt;"; break;
      case '"': r += "&quot;"; break;
      case '\'': r += "&apos;"; break;
      default: r += c;
    }
  }
  return r;
}

// One axis after fitting: maps data values to pixels and lists the ticks.
struct Scale {
  bool log = false;
  double lo = 0, hi = 1;       // in transformed units (log10 of the data on a log axis)
  double p0 = 0, p1 = 1;       // pixel positions of lo and hi
  double t(double v) const { return log ? std::log10(v) : v; }
  double px(double v) const { return p0 + (t(v) - lo) / (hi - lo) * (p1 - p0); }

  // Tick positions in data units: powers of ten on a log axis (every k-th decade so that at
  // most ~12 are shown), 1-2-5 steps on a linear one.
  std::vector<double> given;  // explicit ticks (Axis::ticks)
  std::vector<double> ticks() const {
    if (!given.empty()) return given;
    std::vector<double> out;
    if (log) {
      const double first = std::ceil(lo - 1e-9), last = std::floor(hi + 1e-9);
      const double step = std::max(1.0, std::ceil((last - first + 1) / 12.0));
      for (double e = first; e <= last; e += step) out.push_back(std::pow(10.0, e));
      return out;
    }
    const double raw = (hi - lo) / 8.0;
    const double mag = std::pow(10.0, std::floor(std::log10(raw)));
    const double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
    for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
    return out;
  }
  std::string tick_label(double v) const {
    if (log && given.empty()) return fmt::format("1e{}", static_cast<int>(std::lround(std::log10(v))));
    return fmt::format("{:g}", v);
  }
};

inline Scale fit(const Axis& a, const std::vector<Series>& series, bool is_x, double p0, double p1) {
  Scale s;
  s.log = a.log;
  s.p0 = p0;
  s.p1 = p1;
  s.given = a.ticks;
  if (a.lo < a.hi) {
    s.lo = s.t(a.lo);
    s.hi = s.t(a.hi);
    return s;
  }
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& ser : series)
    for (std::size_t i = 0; i < std::min(ser.x.size(), ser.y.size()); ++i) {
      const double v = is_x ? ser.x[i] : ser.y[i];
      if (!drawable(ser.x[i], is_x ? a.log : false) || !drawable(ser.y[i], is_x ? false : a.log)) continue;
      lo = std::min(lo, s.t(v));
      hi = std::max(hi, s.t(v));
    }
  if (!(lo <= hi)) lo = 0, hi = 1;  // nothing drawable
  if (a.log) {
    lo = std::floor(lo), hi = std::ceil(hi);  // whole decades
  } else {
    const double pad = (hi - lo) * 0.05;
    lo -= pad, hi += pad;
  }
  if (hi - lo < 1e-12) lo -= 0.5, hi += 0.5;
  s.lo = lo;
  s.hi = hi;
  return s;
}

}  // namespace detail

inline std::string Plot::to_svg() const {
  static const char* palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"};
  // Plotting area: margins for the title, tick labels, axis labels and the legend (right).
  const double left = 80, top = 44, bottom = 60, legend_w = 150;
  const double x0 = left, x1 = width - legend_w - 20, y0 = height - bottom, y1 = top;
  const detail::Scale sx = detail::fit(x, series, true, x0, x1);
  const detail::Scale sy = detail::fit(y, series, false, y0, y1);

  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      width, height, width, height);
  s += fmt::format("<text x=\"{:.1f}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n", (x0 + x1) / 2,
                   detail::xml(title));

  // Grid and tick labels.
  for (double v : sx.ticks()) {
    const double p = sx.px(v);
    s += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"#ddd\"/>\n", p, y0, y1);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", p, y0 + 16,
                     detail::xml(sx.tick_label(v)));
  }
  for (double v : sy.ticks()) {
    const double p = sy.px(v);
    s += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/>\n", x0, p, x1);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", x0 - 6, p + 4,
                     detail::xml(sy.tick_label(v)));
  }
  s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" stroke=\"black\"/>\n",
                   x0, y1, x1 - x0, y0 - y1);
  s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", (x0 + x1) / 2, y0 + 40,
                   detail::xml(x.label));
  s += fmt::format("<text transform=\"translate(18 {:.1f}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
                   (y0 + y1) / 2, detail::xml(y.label));

  // Series: polylines broken at undrawable points, clipped to the plotting area.
  // (A few pixels of slack so that markers on the frame are drawn whole.)
  s += fmt::format("<clipPath id=\"area\"><rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\"/></clipPath>\n",
                   x0 - 4, y1 - 4, x1 - x0 + 8, y0 - y1 + 8);
  for (std::size_t k = 0; k < series.size(); ++k) {
    const Series& ser = series[k];
    const std::string color = ser.color.empty() ? palette[k % std::size(palette)] : ser.color;
    std::string points, dots;
    const char* dash = ser.dashed ? " stroke-dasharray=\"6 4\"" : "";
    auto flush = [&] {
      if (!points.empty())
        s += fmt::format("<polyline clip-path=\"url(#area)\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{} points=\"{}\"/>\n",
                         color, dash, points);
      points.clear();
    };
    for (std::size_t i = 0; i < std::min(ser.x.size(), ser.y.size()); ++i) {
      if (!detail::drawable(ser.x[i], x.log) || !detail::drawable(ser.y[i], y.log)) {
        flush();
        continue;
      }
      const double px = sx.px(ser.x[i]), py = sy.px(ser.y[i]);
      points += fmt::format("{:.1f},{:.1f} ", px, py);
      if (ser.markers) dots += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", px, py, color);
    }
    flush();
    s += fmt::format("<g clip-path=\"url(#area)\">\n{}</g>\n", dots);
    // Legend entry.
    const double ly = y1 + 12 + 20.0 * static_cast<double>(k);
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"2\"{}/>\n",
                     x1 + 14, ly, x1 + 38, ly, color, dash);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n", x1 + 44, ly + 4, detail::xml(ser.label));
  }
  s += "</svg>\n";
  return s;
}

}  // namespace svg

namespace demo {

// A series of the older demo call: name, points, dashed or not.
struct Series {
  std::string name;
  std::vector<double> x, y;
  bool dashed = false;
};

// Lines with markers, one colour per series, a legend, ticks at the given x values (drawn on a
// log axis when log2_x) and a y axis from y_min to y_max: an svg::Plot.
inline std::string svg_line_plot(const std::string& title, const std::string& x_label, const std::string& y_label,
                                 const std::vector<Series>& series, const std::vector<double>& x_ticks, bool log2_x,
                                 double y_min, double y_max) {
  svg::Plot p;
  p.title = title;
  p.x = {.label = x_label, .log = log2_x, .lo = x_ticks.front(), .hi = x_ticks.back(), .ticks = x_ticks};
  p.y = {.label = y_label, .log = false, .lo = y_min, .hi = y_max};
  for (const Series& se : series) p.series.push_back({.label = se.name, .x = se.x, .y = se.y, .dashed = se.dashed});
  return p.to_svg();
}

}  // namespace demo
