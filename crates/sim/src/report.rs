//! Reports: the JSON schema, the terminal table, CSV and an SVG chart.

use std::fmt::Write;

use serde::Serialize;

use crate::bound::LowerBound;
use crate::engine::RunOutcome;
use crate::scenario::Scenario;

/// The report of one `sim run`, serialized as the documented JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The seed used.
    pub seed: u64,
    /// The first patch's size in bytes, F.
    pub patch_bytes: u64,
    /// The lower bound on the makespan in seconds.
    pub lower_bound_s: f64,
    /// The origin's egress budget for the first patch under the mesh strategy, in
    /// chunk payload bytes; `None` (JSON `null`) without a budget.
    pub origin_budget_bytes: Option<u64>,
    /// The lower bound under that budget, T_B; equal to `lower_bound_s` without one.
    pub lower_bound_budget_s: f64,
    /// One entry per strategy, in the scenario's order.
    pub results: Vec<StrategyResult>,
    /// The bound's terms, for the table.
    #[serde(skip)]
    pub bound: Option<LowerBound>,
    /// Import assumptions, for the operator.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// The outcome of one strategy.
#[derive(Clone, Debug, Serialize)]
pub struct StrategyResult {
    /// `mesh`, `central` or `office-cache`.
    pub strategy: String,
    /// Seconds from publish until the last receiving site completed; `null` if one never
    /// did before the time limit.
    pub makespan_s: Option<f64>,
    /// Median site completion in seconds (nearest rank over receiving sites).
    pub p50_s: Option<f64>,
    /// 95th percentile site completion in seconds (nearest rank).
    pub p95_s: Option<f64>,
    /// Chunk payload bytes of the first patch that the origin node served.
    pub origin_egress_bytes: u64,
    /// Chunks the origin served past its egress budget because no live peer held them.
    pub origin_budget_overruns: u64,
    /// The largest WAN ingress of any site, chunk payload bytes.
    pub max_site_wan_ingress_bytes: u64,
    /// WAN ingress summed over sites, chunk payload bytes.
    pub total_wan_bytes: u64,
    /// Every site, the origin site included.
    pub per_site: Vec<SiteResult>,
    /// Bytes per access and core link, both directions, every patch.
    #[serde(skip)]
    pub link_bytes: Vec<(String, u64, u64)>,
    /// Later patches and how long each took to reach every running node.
    #[serde(skip)]
    pub later_patches: Vec<(String, Option<f64>)>,
    /// Events the run processed.
    #[serde(skip)]
    pub events: u64,
}

/// One site's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct SiteResult {
    /// The site's name.
    pub site: String,
    /// Seconds from publish until every node of the site that was running at the end
    /// held the patch; `null` if that never happened.
    pub completion_s: Option<f64>,
    /// Chunk payload bytes of the first patch that entered over the access link.
    pub wan_ingress_bytes: u64,
    /// Chunk payload bytes of the first patch that left over the access link.
    pub wan_egress_bytes: u64,
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

/// The nearest-rank percentile of `values`, where `None` sorts last as "never".
fn percentile(values: &[Option<f64>], percent: f64) -> Option<f64> {
    if values.is_empty() {
        return Some(0.0);
    }
    let mut sorted: Vec<f64> = values.iter().map(|v| v.unwrap_or(f64::INFINITY)).collect();
    sorted.sort_by(f64::total_cmp);
    let rank = ((percent / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    let value = sorted[rank - 1];
    value.is_finite().then_some(value)
}

impl StrategyResult {
    /// Summarizes a run over the sites of `scenario`.
    pub fn from_outcome(scenario: &Scenario, outcome: &RunOutcome) -> StrategyResult {
        let origin_site = scenario.origin_site();
        let mut per_site = Vec::new();
        let mut receiving = Vec::new();
        for (index, site) in scenario.sites.iter().enumerate() {
            let members: Vec<_> = outcome
                .nodes
                .iter()
                .filter(|node| node.site == index && !node.origin && (node.running || node.completed_us.is_some()))
                .collect();
            let completion_s = if members.is_empty() {
                (index == origin_site).then_some(0.0)
            } else {
                members.iter().map(|node| node.completed_us.map(seconds)).collect::<Option<Vec<f64>>>().map(|times| times.into_iter().fold(0.0, f64::max))
            };
            if index != origin_site {
                receiving.push(completion_s);
            }
            per_site.push(SiteResult {
                site: site.name.clone(),
                completion_s,
                wan_ingress_bytes: outcome.wan_ingress[index],
                wan_egress_bytes: outcome.wan_egress[index],
            });
        }
        StrategyResult {
            strategy: outcome.strategy.name().to_string(),
            makespan_s: percentile(&receiving, 100.0),
            p50_s: percentile(&receiving, 50.0),
            p95_s: percentile(&receiving, 95.0),
            origin_egress_bytes: outcome.origin_egress_bytes,
            origin_budget_overruns: outcome.origin_budget_overruns,
            max_site_wan_ingress_bytes: outcome.wan_ingress.iter().copied().max().unwrap_or(0),
            total_wan_bytes: outcome.wan_ingress.iter().sum(),
            per_site,
            link_bytes: outcome.link_bytes.clone(),
            later_patches: outcome.later_patches.iter().map(|(id, us)| (id.clone(), us.map(seconds))).collect(),
            events: outcome.events,
        }
    }

    /// The mean WAN ingress over receiving sites, in bytes.
    pub fn mean_site_wan_ingress(&self, origin_site: usize) -> f64 {
        let values: Vec<u64> = self
            .per_site
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != origin_site)
            .map(|(_, site)| site.wan_ingress_bytes)
            .collect();
        if values.is_empty() { 0.0 } else { values.iter().sum::<u64>() as f64 / values.len() as f64 }
    }
}

/// Formats a byte count with a binary prefix.
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{value:.0} B") } else { format!("{value:.2} {}", UNITS[unit]) }
}

fn optional_seconds(value: Option<f64>) -> String {
    value.map_or_else(|| "never".to_string(), |s| format!("{s:.2} s"))
}

impl Report {
    /// The report as pretty-printed JSON with a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// One CSV row per strategy and site, with a header.
    pub fn to_csv(&self) -> String {
        let mut text = String::from("strategy,site,completion_s,wan_ingress_bytes,wan_egress_bytes\n");
        for result in &self.results {
            for site in &result.per_site {
                let completion = site.completion_s.map(|s| format!("{s}")).unwrap_or_default();
                let _ = writeln!(
                    text,
                    "{},{},{},{},{}",
                    result.strategy,
                    csv_field(&site.site),
                    completion,
                    site.wan_ingress_bytes,
                    site.wan_egress_bytes
                );
            }
        }
        text
    }

    /// The terminal table: one row per strategy, then the bound.
    pub fn to_table(&self, origin_site: usize) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "scenario {}  seed {}  patch {}  lower bound {:.2} s ({})",
            self.scenario,
            self.seed,
            human_bytes(self.patch_bytes as f64),
            self.lower_bound_s,
            self.bound.as_ref().map_or("", |bound| bound.binding_term())
        );
        if let Some(budget) = self.origin_budget_bytes {
            let _ = writeln!(
                text,
                "origin budget {} ({:.2} copies) for mesh; bound under the budget {:.2} s",
                human_bytes(budget as f64),
                budget as f64 / self.patch_bytes.max(1) as f64,
                self.lower_bound_budget_s
            );
        }
        let _ = writeln!(
            text,
            "{:<13} {:>10} {:>10} {:>10} {:>13} {:>13} {:>13} {:>8}",
            "strategy", "makespan", "p50", "p95", "origin out", "max site in", "mean site in", "÷ bound"
        );
        for result in &self.results {
            // Only the mesh keeps the budget, so only its ratio is to T_B.
            let bound = if result.strategy == "mesh" { self.lower_bound_budget_s } else { self.lower_bound_s };
            let ratio = match result.makespan_s {
                Some(makespan) if bound > 0.0 => format!("{:.2}", makespan / bound),
                _ => "-".into(),
            };
            let _ = writeln!(
                text,
                "{:<13} {:>10} {:>10} {:>10} {:>13} {:>13} {:>13} {:>8}",
                result.strategy,
                optional_seconds(result.makespan_s),
                optional_seconds(result.p50_s),
                optional_seconds(result.p95_s),
                human_bytes(result.origin_egress_bytes as f64),
                human_bytes(result.max_site_wan_ingress_bytes as f64),
                human_bytes(result.mean_site_wan_ingress(origin_site)),
                ratio
            );
        }
        for result in &self.results {
            if result.origin_budget_overruns > 0 {
                let _ = writeln!(
                    text,
                    "{}: the origin served {} chunks past its budget because no live peer held them",
                    result.strategy, result.origin_budget_overruns
                );
            }
            for (id, finish) in &result.later_patches {
                let _ = writeln!(text, "{}: later patch {id} reached every running node in {}", result.strategy, optional_seconds(*finish));
            }
        }
        text
    }

    /// An SVG with two charts: the share of sites complete over time per strategy, with
    /// the lower bound marked, and the bytes each access and core link carried.
    pub fn to_svg(&self) -> String {
        const COLORS: [&str; 3] = ["#1b9e77", "#d95f02", "#7570b3"];
        let width = 900.0;
        let chart_height = 320.0;
        let left = 70.0;
        let right = 30.0;
        let top = 50.0;
        let plot_width = width - left - right;

        let links: Vec<&(String, u64, u64)> = self.results.first().map(|r| r.link_bytes.iter().collect()).unwrap_or_default();
        let row_height = 6.0 * self.results.len().max(1) as f64 + 6.0;
        let bars_top = top + chart_height + 90.0;
        let height = bars_top + row_height * links.len() as f64 + 40.0;

        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0}" viewBox="0 0 {width} {height:.0}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="{left}" y="24" font-size="16">{}: sites complete over time (patch {})</text>"#,
            xml_escape(&self.scenario),
            human_bytes(self.patch_bytes as f64)
        );

        // Chart 1: completion over time.
        let end = self
            .results
            .iter()
            .flat_map(|r| r.per_site.iter().filter_map(|s| s.completion_s))
            .fold(self.lower_bound_s, f64::max)
            .max(1e-3)
            * 1.05;
        let x = |t: f64| left + t / end * plot_width;
        let y = |fraction: f64| top + chart_height - fraction * chart_height;
        let _ = writeln!(
            svg,
            r##"<rect x="{left}" y="{top}" width="{plot_width}" height="{chart_height}" fill="none" stroke="#999"/>"##
        );
        for tick in 0..=5 {
            let t = end * f64::from(tick) / 5.0;
            let _ = writeln!(svg, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{t:.1} s</text>"#, x(t), top + chart_height + 16.0);
            let fraction = f64::from(tick) / 5.0;
            let _ = writeln!(svg, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{:.0}%</text>"#, left - 6.0, y(fraction) + 4.0, fraction * 100.0);
        }
        let bound_x = x(self.lower_bound_s);
        let _ = writeln!(
            svg,
            r##"<line x1="{bound_x:.1}" y1="{top}" x2="{bound_x:.1}" y2="{:.1}" stroke="#000" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}">lower bound</text>"##,
            top + chart_height,
            bound_x + 4.0,
            top + 14.0
        );
        for (index, result) in self.results.iter().enumerate() {
            let color = COLORS[index % COLORS.len()];
            let mut times: Vec<f64> = result.per_site.iter().filter_map(|s| s.completion_s).filter(|&t| t > 0.0).collect();
            times.sort_by(f64::total_cmp);
            // Receiving sites: every site but one holding only the origin, which
            // completes at 0 s. A site that never completed still counts.
            let total = result.per_site.iter().filter(|s| s.completion_s != Some(0.0)).count().max(1) as f64;
            let mut points = format!("{:.1},{:.1}", x(0.0), y(0.0));
            for (done, time) in times.iter().enumerate() {
                let _ = write!(points, " {:.1},{:.1} {:.1},{:.1}", x(*time), y(done as f64 / total), x(*time), y((done + 1) as f64 / total));
            }
            let _ = writeln!(svg, r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>"#);
            let legend_y = top + 20.0 + 16.0 * index as f64;
            let _ = writeln!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="12" height="12" fill="{color}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                left + plot_width - 150.0,
                legend_y - 10.0,
                left + plot_width - 132.0,
                legend_y,
                xml_escape(&result.strategy)
            );
        }

        // Chart 2: bytes per link, one bar per strategy.
        let _ = writeln!(svg, r#"<text x="{left}" y="{:.1}" font-size="16">Bytes carried per link (both directions, all patches)</text>"#, bars_top - 30.0);
        let max_bytes = self
            .results
            .iter()
            .flat_map(|r| r.link_bytes.iter().map(|(_, up, down)| up + down))
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let label_width = 200.0;
        let bar_width = plot_width - label_width + left - 20.0;
        for (row, (name, _, _)) in links.iter().enumerate() {
            let row_y = bars_top + row_height * row as f64;
            let _ = writeln!(svg, r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="10">{}</text>"#, label_width - 6.0, row_y + row_height / 2.0 + 2.0, xml_escape(name));
            for (index, result) in self.results.iter().enumerate() {
                let Some((_, up, down)) = result.link_bytes.get(row) else {
                    continue;
                };
                let length = (up + down) as f64 / max_bytes * bar_width;
                let _ = writeln!(
                    svg,
                    r#"<rect x="{label_width}" y="{:.1}" width="{length:.1}" height="5" fill="{}"><title>{} {}: {}</title></rect>"#,
                    row_y + 6.0 * index as f64,
                    COLORS[index % COLORS.len()],
                    xml_escape(&result.strategy),
                    xml_escape(name),
                    human_bytes((up + down) as f64)
                );
            }
        }
        let _ = writeln!(svg, r#"<text x="{label_width}" y="{:.1}">full bar = {}</text>"#, height - 12.0, human_bytes(max_bytes));
        svg.push_str("</svg>\n");
        svg
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_string() }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let values: Vec<Option<f64>> = (1..=20).map(|v| Some(f64::from(v))).collect();
        assert_eq!(percentile(&values, 50.0), Some(10.0));
        assert_eq!(percentile(&values, 95.0), Some(19.0));
        assert_eq!(percentile(&values, 100.0), Some(20.0));
    }

    #[test]
    fn percentile_never_sorts_last() {
        let values = vec![Some(1.0), None];
        assert_eq!(percentile(&values, 50.0), Some(1.0));
        assert_eq!(percentile(&values, 100.0), None);
    }
}
