// shift_report.cpp: the shift report as a terminal table, as Markdown, and as
// a PNG with one panel per family (io/plot.h's canvas). See shift_eval.h.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "ebm/io/plot.h"
#include "ebm/ood/shift_eval.h"
#include "format.h"

namespace ebm {

namespace {

std::string f4(double v) { return std::isfinite(v) ? fmt("%.4f", v) : "-"; }
std::string f3(double v) { return std::isfinite(v) ? fmt("%.3f", v) : "-"; }
std::string sev(double v) { return std::isfinite(v) ? fmt("%g", v) : "never"; }

// A table rendered either as aligned text or as GitHub Markdown.
struct Table {
  std::vector<std::string> header;
  std::vector<bool> right;  // right-align (numbers)
  std::vector<std::vector<std::string>> rows;

  std::string markdown() const {
    std::string s = "|";
    for (const auto& h : header) s += " " + h + " |";
    s += "\n|";
    for (size_t i = 0; i < header.size(); ++i) s += right[i] ? "---:|" : "---|";
    s += "\n";
    for (const auto& r : rows) {
      s += "|";
      for (const auto& c : r) s += " " + c + " |";
      s += "\n";
    }
    return s;
  }
  std::string text() const {
    std::vector<size_t> w(header.size());
    for (size_t i = 0; i < header.size(); ++i) {
      w[i] = header[i].size();
      for (const auto& r : rows) w[i] = std::max(w[i], r[i].size());
    }
    auto line = [&](const std::vector<std::string>& r) {
      std::string s;
      for (size_t i = 0; i < r.size(); ++i) {
        const std::string pad(w[i] - r[i].size(), ' ');
        s += (i ? "  " : "") + (right[i] ? pad + r[i] : r[i] + pad);
      }
      while (!s.empty() && s.back() == ' ') s.pop_back();
      return s + "\n";
    };
    std::string s = line(header);
    for (const auto& r : rows) s += line(r);
    return s;
  }
};

// The index of the MSP score (plain or on a separate classifier), or -1.
int msp_index(const ShiftReport& r) {
  for (size_t k = 1; k < r.labels.size(); ++k)
    if (r.labels[k] == "msp" || r.labels[k] == "clf:msp") return int(k);
  return -1;
}

// The comparison score (k >= 1) with the highest finite value, or -1.
int best_other(const std::vector<double>& v) {
  int best = -1;
  for (size_t k = 1; k < v.size(); ++k)
    if (std::isfinite(v[k]) && (best < 0 || v[k] > v[best])) best = int(k);
  return best;
}

// The summary: one row per family plus the pooled row.
Table summary_table(const ShiftReport& r) {
  const int msp = msp_index(r);
  const bool others = r.labels.size() > 1;
  Table t;
  t.header = {"shift", "severity scale", "AUROC >= 0.9 at", "Spearman rho", "flag-error agreement"};
  t.right = {false, false, true, true, true};
  if (msp >= 0) {
    t.header.push_back("MSP's");
    t.right.push_back(true);
  }
  if (others) {
    t.header.push_back("best other score's");
    t.right.push_back(false);
  }
  auto add = [&](const std::string& name, const std::string& scale, const std::string& reach, const std::string& rho,
                 const std::vector<double>& fe) {
    std::vector<std::string> row{name, scale, reach, rho, f3(fe[0])};
    if (msp >= 0) row.push_back(f3(fe[msp]));
    if (others) {
      const int b = best_other(fe);
      row.push_back(b < 0 ? "-" : f3(fe[b]) + " (" + r.labels[b] + ")");
    }
    t.rows.push_back(row);
  };
  for (const auto& c : r.shifts) {
    const auto colon = c.describe.find("; severity = ");
    add(c.name, colon == std::string::npos ? "" : c.describe.substr(colon + 13), sev(c.reaches_09[0]),
        f3(c.spearman[0]), c.flag_error);
  }
  add("all families pooled", "", "", "", r.flag_error_pooled);
  return t;
}

Table levels_table(const ShiftReport& r) {
  Table t;
  t.header = {"shift", "severity", "AUROC", "FPR95", "accuracy", "flagged"};
  t.right = {false, true, true, true, true, true};
  for (const auto& c : r.shifts)
    for (const auto& l : c.levels)
      t.rows.push_back({c.name, fmt("%g", l.severity), f4(l.metrics[0].auroc), f4(l.metrics[0].fpr95),
                        f4(l.accuracy), f4(l.flagged)});
  return t;
}

// Every score side by side: AUROC per level, then the flag-error agreement per family.
Table scores_table(const ShiftReport& r, bool flag_error) {
  Table t;
  t.header = {"shift"};
  t.right = {false};
  if (!flag_error) {
    t.header.push_back("severity");
    t.right.push_back(true);
  }
  for (const auto& l : r.labels) {
    t.header.push_back(l);
    t.right.push_back(true);
  }
  for (const auto& c : r.shifts) {
    if (flag_error) {
      std::vector<std::string> row{c.name};
      for (double v : c.flag_error) row.push_back(f3(v));
      t.rows.push_back(row);
      continue;
    }
    for (const auto& l : c.levels) {
      std::vector<std::string> row{c.name, fmt("%g", l.severity)};
      for (const auto& m : l.metrics) row.push_back(f4(m.auroc));
      t.rows.push_back(row);
    }
  }
  if (flag_error) {
    std::vector<std::string> row{"all families pooled"};
    for (double v : r.flag_error_pooled) row.push_back(f3(v));
    t.rows.push_back(row);
  }
  return t;
}

// The setup, one line each: data, model and score, classifier, detector.
std::vector<std::string> setup_lines(const ShiftReport& r) {
  return {"in: " + r.in + " test split, first " + std::to_string(r.n) + " images at each of " +
              std::to_string(r.levels) + " severities per family (linspace(0, max)); seed " + std::to_string(r.seed),
          "model: " + r.model + ", primary score " + (r.labels.empty() ? "" : r.labels[0]),
          "classifier: " + (r.classifier.empty() ? std::string("none") : r.classifier),
          "detector: " + (r.detector.empty() ? std::string("none") : r.detector + ", threshold " + fmt("%.6g", r.threshold)),
          std::isfinite(r.wall_seconds)
              ? "wall time: " + fmt("%.0f", r.wall_seconds) + " s on " + std::to_string(r.threads) + " thread(s)"
              : std::string()};
}

// The non-empty lines of v, joined with sep.
std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string s;
  for (const auto& x : v)
    if (!x.empty()) s += (s.empty() ? "" : sep) + x;
  return s;
}

}  // namespace

std::string format_shift_table(const ShiftReport& r) {
  std::string s = join(setup_lines(r), "\n") + "\n\n" + levels_table(r).text() + "\n" + summary_table(r).text();
  if (r.labels.size() > 1) s += "\nflag-error agreement of every score\n" + scores_table(r, true).text();
  return s;
}

std::string format_shift_markdown(const ShiftReport& r) {
  // Two trailing spaces: a Markdown line break.
  std::string s = join(setup_lines(r), "  \n") + "\n\n";
  s += "### Summary per family (primary score: " + r.labels[0] + ")\n\n" + summary_table(r).markdown() + "\n";
  s += "Flag-error agreement: the AUROC of the score at separating the images the classifier gets wrong from "
       "those it gets right, every severity of the family pooled; Spearman rho: severity vs AUROC.\n\n";
  s += "### Per level (primary score: " + r.labels[0] + ")\n\n" + levels_table(r).markdown() + "\n";
  if (r.labels.size() > 1) {
    s += "### Flag-error agreement of every score\n\n" + scores_table(r, true).markdown() + "\n";
    s += "### AUROC of every score\n\n" + scores_table(r, false).markdown();
  }
  return s;
}

void write_shift_plot(const ShiftReport& r, const std::string& path) {
  const int64_t n = int64_t(r.shifts.size());
  TORCH_CHECK(n > 0, "write_shift_plot: the report has no shift");
  const int64_t cols = std::min<int64_t>(4, n), rows = (n + cols - 1) / cols;
  const int64_t PW = 236, PH = 170, ML = 46, MR = 34, MT = 52, MB = 46, top = 66;
  const int64_t cw = ML + PW + MR, ch = MT + PH + MB;
  Canvas c(std::max<int64_t>(cols * cw, 760), top + rows * ch);
  c.text(10, 8, "OOD UNDER GRADED SHIFT: " + r.model + " (" + r.labels[0] + ") ON " + r.in + " TEST, " +
                    std::to_string(r.n) + " IMAGES PER LEVEL");
  // Legend: AUROC solid black, accuracy dashed grey, flagged share dotted.
  int64_t lx = 10;
  const int64_t ly = 34;
  auto legend = [&](const std::string& label, float grey, int thick, int on, int off) {
    c.line(lx, ly + 5, lx + 30, ly + 5, grey, thick, on, off);
    lx += 38 + c.text(lx + 38, ly, label) + 24;
  };
  legend("AUROC (SHIFTED VS CLEAN)", 0.0f, 2, 0, 0);
  if (!r.classifier.empty()) legend("CLASSIFIER ACCURACY", 0.45f, 2, 8, 5);
  if (!r.detector.empty()) legend("FLAGGED AT THE THRESHOLD", 0.2f, 2, 2, 4);
  c.text(lx, ly, "(FAINT: AUROC 0.9)", 1, 0.5f);
  for (int64_t j = 0; j < n; ++j) {
    const auto& s = r.shifts[j];
    const int64_t ox = (j % cols) * cw + ML, oy = top + (j / cols) * ch + MT;
    const double smax = s.levels.back().severity;
    auto X = [&](double v) { return ox + (smax > 0 ? v / smax : 0.0) * PW; };
    auto Y = [&](double f) { return oy + PH - f * PH; };
    c.text(ox, oy - 40, s.name);
    c.text(ox, oy - 26,
           "AUROC 0.9 AT " + sev(s.reaches_09[0]) + "  FLAG-ERR " + f3(s.flag_error[0]), 1, 0.3f);
    for (int k = 1; k < 4; ++k) c.line(ox, Y(k / 4.0), ox + PW, Y(k / 4.0), 0.9f);
    c.line(ox, Y(0.9), ox + PW, Y(0.9), 0.75f, 1, 3, 3);
    auto series = [&](auto value, float grey, int on, int off) {
      std::vector<std::pair<double, double>> pts;
      for (const auto& l : s.levels) {
        const double v = value(l);
        if (std::isfinite(v)) pts.emplace_back(X(l.severity), Y(v));
      }
      if (pts.size() >= 2) c.polyline(pts, grey, 2, on, off);
      for (const auto& p : pts) c.dot(p.first, p.second, 2, grey);
    };
    series([](const ShiftLevel& l) { return l.accuracy; }, 0.45f, 8, 5);
    series([](const ShiftLevel& l) { return l.flagged; }, 0.2f, 2, 4);
    series([](const ShiftLevel& l) { return l.metrics[0].auroc; }, 0.0f, 0, 0);
    c.frame(ox, oy, ox + PW, oy + PH, 0.0f);
    for (int k = 0; k <= 2; ++k) {
      const std::string t = fmt("%.1f", k / 2.0);
      c.line(ox - 3, Y(k / 2.0), ox, Y(k / 2.0), 0.0f);
      c.text(ox - 6 - Canvas::text_width(t), std::lround(Y(k / 2.0)) - 3, t);
    }
    for (const auto& l : s.levels) {
      const std::string t = fmt("%g", l.severity);
      c.line(X(l.severity), oy + PH, X(l.severity), oy + PH + 3, 0.0f);
      c.text(std::lround(X(l.severity)) - Canvas::text_width(t) / 2, oy + PH + 7, t);
    }
    const auto colon = s.describe.find("; severity = ");
    const std::string unit = "SEVERITY: " + (colon == std::string::npos ? std::string() : s.describe.substr(colon + 13));
    c.text(ox + PW / 2 - Canvas::text_width(unit) / 2, oy + PH + 22, unit, 1, 0.3f);
  }
  c.save(path);
}

}  // namespace ebm
