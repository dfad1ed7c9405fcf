// report.cpp: OodReport as a text table, Markdown, CSV and per-image scores.
#include "ebm/ood/ood.h"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/core/models.h"
#include "ebm/io/data.h"
#include "ebm/io/image_io.h"
#include "ebm/io/plot.h"
#include "ebm/io/progress.h"
#include "format.h"

namespace ebm {


namespace {


std::string pad_right(const std::string& s, size_t w) { return s.size() >= w ? s : s + std::string(w - s.size(), ' '); }
std::string pad_left(const std::string& s, size_t w) { return s.size() >= w ? s : std::string(w - s.size(), ' ') + s; }

std::string header_line(const OodReport& r) {
  std::string s = "in: " + r.in + " (" + r.split + " split, n_in = " + std::to_string(r.n_in) + ")";
  if (!std::isnan(r.accuracy)) s += ", classifier accuracy " + fmt("%.4f", r.accuracy);
  return s;
}

std::string score_label(const OodReport& r) {
  return r.score + ((r.score == "energy" || r.score == "grad-norm") && r.temperature != 1.0
                        ? " (T=" + fmt("%g", r.temperature) + ")"
                        : "");
}

// "mnist (near)", "uniform (far, seen)": the protocol's group and leakage
// mark beside each set (evaluate.cpp's ood_group / seen_in_training).
std::string set_label(const OodSetResult& x) { return x.name + " (" + x.group + (x.seen ? ", seen" : "") + ")"; }

size_t name_width(const OodReport& r) {
  size_t w = 9;
  for (const auto& x : r.ood) w = std::max(w, set_label(x).size());
  return w + 2;
}

// The rows below the sets: "mean" (every set not seen in training), then one per group.
std::vector<std::pair<std::string, const OodMetrics*>> mean_rows(const OodReport& r) {
  std::vector<std::pair<std::string, const OodMetrics*>> rows;
  if (!std::isnan(r.mean.auroc)) rows.emplace_back("mean", &r.mean);
  for (const auto& [g, m] : r.groups) rows.emplace_back("mean " + g, &m);
  return rows;
}

}  // namespace

std::string format_table(const std::vector<OodReport>& reports) {
  TORCH_INTERNAL_ASSERT(!reports.empty());
  const auto& r0 = reports[0];
  const size_t nw = name_width(r0);
  std::ostringstream out;
  out << header_line(r0) << "\n";
  if (reports.size() == 1) {
    out << "score: " << score_label(r0) << " (higher = more OOD)\n";
    out << pad_right("OOD", nw) << pad_left("AUROC", 8) << pad_left("AUPR-In", 9) << pad_left("AUPR-Out", 10)
        << pad_left("FPR95", 8) << pad_left("n", 8) << "\n";
    auto row = [&](const std::string& name, const OodMetrics& m, int64_t n) {
      out << pad_right(name, nw) << pad_left(fmt("%.4f", m.auroc), 8) << pad_left(fmt("%.4f", m.aupr_in), 9)
          << pad_left(fmt("%.4f", m.aupr_out), 10) << pad_left(fmt("%.4f", m.fpr95), 8)
          << pad_left(std::to_string(n), 8) << "\n";
    };
    for (const auto& x : r0.ood) row(set_label(x), x.metrics, x.n);
    for (const auto& [label, m] : mean_rows(r0)) row(label, *m, m->n_ood);
    for (const auto& x : r0.ood)
      if (x.has_ci)
        out << "  " << x.name << " 95% CI: AUROC [" << fmt("%.4f", x.ci.auroc[0]) << ", " << fmt("%.4f", x.ci.auroc[1])
            << "]  FPR95 [" << fmt("%.4f", x.ci.fpr95[0]) << ", " << fmt("%.4f", x.ci.fpr95[1]) << "]\n";
    return out.str();
  }
  // Side by side: AUROC and FPR95 of every score; a column is as wide as its label needs.
  std::vector<size_t> cw;
  for (const auto& r : reports) cw.push_back(std::max<size_t>(16, score_label(r).size() + 2));
  out << pad_right("", nw);
  for (size_t i = 0; i < reports.size(); ++i) out << pad_left(score_label(reports[i]), cw[i]);
  out << pad_left("n", 8) << "\n" << pad_right("OOD", nw);
  for (size_t i = 0; i < reports.size(); ++i) out << pad_left("AUROC", cw[i] - 8) << pad_left("FPR95", 8);
  out << pad_left("", 8) << "\n";
  for (size_t j = 0; j < r0.ood.size(); ++j) {
    out << pad_right(set_label(r0.ood[j]), nw);
    for (size_t i = 0; i < reports.size(); ++i) {
      const OodMetrics& m = reports[i].ood[j].metrics;
      out << pad_left(fmt("%.4f", m.auroc), cw[i] - 8) << pad_left(fmt("%.4f", m.fpr95), 8);
    }
    out << pad_left(std::to_string(r0.ood[j].n), 8) << "\n";
  }
  const auto labels = mean_rows(r0);
  for (size_t k = 0; k < labels.size(); ++k) {
    out << pad_right(labels[k].first, nw);
    for (size_t i = 0; i < reports.size(); ++i) {
      const OodMetrics& m = *mean_rows(reports[i]).at(k).second;
      out << pad_left(fmt("%.4f", m.auroc), cw[i] - 8) << pad_left(fmt("%.4f", m.fpr95), 8);
    }
    out << pad_left(std::to_string(labels[k].second->n_ood), 8) << "\n";
  }
  return out.str();
}

std::string format_markdown(const std::vector<OodReport>& reports) {
  TORCH_INTERNAL_ASSERT(!reports.empty());
  const auto& r0 = reports[0];
  std::ostringstream out;
  out << header_line(r0) << ". Scores: higher = more OOD. FPR95 = fraction of OOD accepted when 95% of "
      << "in-distribution is accepted.\n\n";
  if (reports.size() > 1) {
    out << "| OOD | n |";
    for (const auto& r : reports) out << " " << score_label(r) << " AUROC | " << score_label(r) << " FPR95 |";
    out << "\n|---|---:|";
    for (size_t i = 0; i < reports.size(); ++i) out << "---:|---:|";
    out << "\n";
    for (size_t j = 0; j < r0.ood.size(); ++j) {
      out << "| " << set_label(r0.ood[j]) << " | " << r0.ood[j].n << " |";
      for (const auto& r : reports)
        out << " " << fmt("%.4f", r.ood[j].metrics.auroc) << " | " << fmt("%.4f", r.ood[j].metrics.fpr95) << " |";
      out << "\n";
    }
    const auto labels = mean_rows(r0);
    for (size_t k = 0; k < labels.size(); ++k) {
      out << "| **" << labels[k].first << "** | " << labels[k].second->n_ood << " |";
      for (const auto& r : reports) {
        const OodMetrics& m = *mean_rows(r).at(k).second;
        out << " " << fmt("%.4f", m.auroc) << " | " << fmt("%.4f", m.fpr95) << " |";
      }
      out << "\n";
    }
    out << "\n";
  }
  for (const auto& r : reports) {
    out << "Score **" << score_label(r) << "**\n\n"
        << "| OOD | AUROC | AUPR-In | AUPR-Out | FPR95 | detection error | n |\n"
        << "|---|---:|---:|---:|---:|---:|---:|\n";
    auto row = [&](const std::string& name, const OodMetrics& m, int64_t n) {
      out << "| " << name << " | " << fmt("%.4f", m.auroc) << " | " << fmt("%.4f", m.aupr_in) << " | "
          << fmt("%.4f", m.aupr_out) << " | " << fmt("%.4f", m.fpr95) << " | " << fmt("%.4f", m.detection_error)
          << " | " << n << " |\n";
    };
    for (const auto& x : r.ood) row(set_label(x), x.metrics, x.n);
    for (const auto& [label, m] : mean_rows(r)) row("**" + label + "**", *m, m->n_ood);
    if (!r.choices.is_null() && r.choices.contains("chosen_on"))
      out << "\nFitted on " << r.choices.value("fitted_on", "") << "; "
          << (r.choices.contains("chosen") ? r.choices["chosen"].dump() + " chosen on " : "no hyperparameter; ")
          << r.choices["chosen_on"].get<std::string>() << ".\n";
    out << "\n";
  }
  return out.str();
}

std::string format_csv(const std::vector<OodReport>& reports) {
  std::ostringstream out;
  out << "score,temperature,in,ood,n_in,n,auroc,aupr_in,aupr_out,fpr95,detection_error\n";
  auto quote = [](const std::string& s) {
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  };
  for (const auto& r : reports) {
    auto row = [&](const std::string& name, const OodMetrics& m, int64_t n) {
      out << r.score << "," << fmt("%.17g", r.temperature) << "," << quote(r.in) << "," << quote(name) << ","
          << r.n_in << "," << n << "," << fmt("%.17g", m.auroc) << "," << fmt("%.17g", m.aupr_in) << ","
          << fmt("%.17g", m.aupr_out) << "," << fmt("%.17g", m.fpr95) << "," << fmt("%.17g", m.detection_error)
          << "\n";
    };
    for (const auto& x : r.ood) row(x.name, x.metrics, x.n);
    row("mean", r.mean, r.mean.n_ood);
  }
  return out.str();
}

std::string format_scores_csv(const std::vector<OodReport>& reports) {
  TORCH_CHECK(!reports.empty(), "format_scores_csv: no reports");
  std::ostringstream out;
  out << "set,index";
  for (const auto& r : reports) out << "," << r.score;
  out << "\n";
  auto rows = [&](const std::string& set, const std::function<torch::Tensor(const OodReport&)>& col) {
    std::vector<torch::Tensor> cols;
    for (const auto& r : reports) cols.push_back(col(r).to(torch::kFloat64).contiguous());
    const int64_t n = cols[0].size(0);
    for (const auto& c : cols) TORCH_CHECK(c.size(0) == n, "format_scores_csv: reports of different sizes for ", set);
    for (int64_t i = 0; i < n; ++i) {
      out << set << "," << i;
      for (const auto& c : cols) out << "," << fmt("%.9g", c.data_ptr<double>()[i]);
      out << "\n";
    }
  };
  rows("in:" + reports[0].in, [](const OodReport& r) { return r.in_scores; });
  for (size_t k = 0; k < reports[0].ood.size(); ++k)
    rows(reports[0].ood[k].name, [k](const OodReport& r) { return r.ood.at(k).scores; });
  return out.str();
}

}  // namespace ebm
