//! A run's timeline as one self-contained HTML page (`keel-sim replay
//! --timeline FILE.html`): inline CSS and SVG, no script, nothing fetched.
//! A lane per node with its role over time, a lane with the leader key's
//! holder, faults as spans on the lanes they hit (cluster-wide faults on a
//! lane of their own), client writes acknowledged and failed per pixel
//! column, violations as red lines across every lane, and hover titles
//! with the decision reasons, fault details and counts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::trace::{TraceEvent, What};

/// Width of the time axis in pixels; writes and decision reasons are
/// aggregated per column of this axis, so the page's size does not grow
/// with the run's length.
const WIDTH: f64 = 1200.0;
const LEFT: f64 = 110.0;
const LANE: f64 = 26.0;
const GAP: f64 = 6.0;
/// Decision reasons are grouped into buckets of this many pixels.
const REASON_BUCKET_PX: f64 = 4.0;
/// At most this many reasons are listed in one bucket's title.
const REASONS_PER_TITLE: usize = 6;

const ROLES: [(&str, &str); 5] = [
    ("primary", "#2e7d32"),
    ("replica", "#1e88e5"),
    ("starting", "#f9a825"),
    ("stopped", "#9e9e9e"),
    ("down", "#37474f"),
];
const HOLDERS: [&str; 9] =
    ["#8e24aa", "#00897b", "#f4511e", "#3949ab", "#c0ca33", "#6d4c41", "#d81b60", "#00acc1", "#7cb342"];

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// A span on one lane: from, to (ms), colour, title.
struct Span {
    from: u64,
    to: u64,
    colour: String,
    title: String,
}

struct Page {
    svg: String,
    duration_ms: u64,
}

impl Page {
    fn x(&self, t_ms: u64) -> f64 {
        LEFT + WIDTH * (t_ms.min(self.duration_ms) as f64 / self.duration_ms as f64)
    }

    /// A rectangle at (x, y) of width w and height h.
    fn rect(&mut self, (x, y, w, h): (f64, f64, f64, f64), fill: &str, class: &str, title: &str) {
        let _ = write!(
            self.svg,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="{fill}" class="{class}"><title>{}</title></rect>"#,
            w.max(1.0),
            esc(title)
        );
        self.svg.push('\n');
    }

    fn spans(&mut self, y: f64, h: f64, spans: &[Span], class: &str) {
        for s in spans {
            let (x0, x1) = (self.x(s.from), self.x(s.to));
            self.rect((x0, y, x1 - x0, h), &s.colour, class, &s.title);
        }
    }

    /// `text` written inside the span from..to of a lane at y, where it
    /// fits.
    fn span_text(&mut self, y: f64, (from, to): (u64, u64), text: &str) {
        let (x0, x1) = (self.x(from), self.x(to));
        if x1 - x0 < 7.0 * text.len() as f64 + 6.0 {
            return;
        }
        let _ = writeln!(
            self.svg,
            r#"<text x="{:.1}" y="{:.1}" class="holder-name">{}</text>"#,
            (x0 + x1) / 2.0,
            y + LANE / 2.0 + 4.0,
            esc(text)
        );
    }

    fn label(&mut self, y: f64, text: &str) {
        let _ = writeln!(
            self.svg,
            r#"<text x="{:.1}" y="{:.1}" class="lane">{}</text>"#,
            LEFT - 8.0,
            y + LANE / 2.0 + 4.0,
            esc(text)
        );
    }
}

/// Closes the open span of every lane at `end` and returns them all.
fn close(
    open: BTreeMap<String, (u64, String, String)>,
    mut done: Vec<(String, Span)>,
    end: u64,
) -> Vec<(String, Span)> {
    for (lane, (from, colour, title)) in open {
        done.push((lane, Span { from, to: end, colour, title }));
    }
    done
}

/// Renders the page for a trace (as `crate::trace` records it).
pub fn render(events: &[TraceEvent]) -> String {
    let (seed, nodes, duration_ms, config) = events
        .iter()
        .find_map(|e| match &e.what {
            What::Start { seed, nodes, duration_ms, config } => {
                Some((*seed, nodes.clone(), *duration_ms, config.clone()))
            }
            _ => None,
        })
        .unwrap_or_else(|| (0, Vec::new(), 0, String::new()));
    let end = events.iter().map(|e| e.t_ms).max().unwrap_or(0).max(duration_ms).max(1);
    let lane_of = |node: &str| nodes.iter().position(|n| n == node);

    // Roles and leader key holders as spans.
    let role_colour = |role: &str| ROLES.iter().find(|(r, _)| *r == role).map_or("#ffffff", |(_, c)| c);
    let mut open: BTreeMap<String, (u64, String, String)> = BTreeMap::new();
    let mut roles: Vec<(String, Span)> = Vec::new();
    let mut holders: Vec<Span> = Vec::new();
    // Who holds the key in each of those spans (written in the lane).
    let mut holder_names: Vec<(u64, u64, Option<String>)> = Vec::new();
    let mut holder_open: Option<(u64, Option<String>)> = None;
    let mut faults: Vec<(Option<String>, Span)> = Vec::new();
    let mut fault_open: BTreeMap<String, (u64, u64, Option<String>, String)> = BTreeMap::new();
    let mut writes = vec![(0u32, 0u32); WIDTH as usize];
    let mut reasons: BTreeMap<(usize, u64), Vec<(u64, String)>> = BTreeMap::new();
    let mut violations: Vec<(u64, String)> = Vec::new();
    let mut verdict = None;
    let column =
        |t: u64, px: f64| ((t.min(end) as f64 / end as f64 * WIDTH / px) as u64).min((WIDTH / px) as u64 - 1);
    let holder_span = |from: u64, to: u64, holder: &Option<String>| {
        let colour = match holder.as_deref().and_then(lane_of) {
            Some(i) => HOLDERS[i % HOLDERS.len()].to_owned(),
            None => "#eeeeee".to_owned(),
        };
        let who = holder.as_deref().unwrap_or("nobody");
        Span { from, to, colour, title: format!("leader key: {who}, {} .. {}", secs(from), secs(to)) }
    };
    for e in events {
        match &e.what {
            What::Role { node, role } => {
                if let Some((from, colour, title)) = open.remove(node) {
                    let title = format!("{title} .. {}", secs(e.t_ms));
                    roles.push((node.clone(), Span { from, to: e.t_ms, colour, title }));
                }
                let title = format!("{node}: {role}, {}", secs(e.t_ms));
                open.insert(node.clone(), (e.t_ms, role_colour(role).to_owned(), title));
            }
            What::LeaderKey { holder } => {
                if let Some((from, h)) = holder_open.take() {
                    holders.push(holder_span(from, e.t_ms, &h));
                    holder_names.push((from, e.t_ms, h));
                }
                holder_open = Some((e.t_ms, holder.clone()));
            }
            What::FaultStart { fault, node, detail, until_ms } => {
                fault_open.insert(detail.clone(), (e.t_ms, *until_ms, node.clone(), fault.clone()));
            }
            What::FaultEnd { detail, .. } => {
                if let Some((from, _, node, fault)) = fault_open.remove(detail) {
                    let title = format!("fault {fault} {} .. {}: {detail}", secs(from), secs(e.t_ms));
                    faults.push((node, Span { from, to: e.t_ms, colour: "url(#hatch)".to_owned(), title }));
                }
            }
            What::Write { ok, .. } => {
                let c = &mut writes[column(e.t_ms, 1.0) as usize];
                if *ok {
                    c.0 += 1;
                } else {
                    c.1 += 1;
                }
            }
            What::Decision { node, reason } => {
                if let Some(i) = lane_of(node) {
                    reasons
                        .entry((i, column(e.t_ms, REASON_BUCKET_PX)))
                        .or_default()
                        .push((e.t_ms, reason.clone()));
                }
            }
            What::Violation { text } => violations.push((e.t_ms, text.clone())),
            What::Verdict { ok, violations } => verdict = Some((*ok, violations.len())),
            What::Start { .. } | What::Log { .. } => {}
        }
    }
    let roles = close(open, roles, end);
    if let Some((from, h)) = holder_open.take() {
        holders.push(holder_span(from, end, &h));
        holder_names.push((from, end, h));
    }
    for (detail, (from, until, node, fault)) in fault_open {
        let title =
            format!("fault {fault} {} .. {} (not healed in the trace): {detail}", secs(from), secs(until));
        faults.push((node, Span { from, to: until.max(from), colour: "url(#hatch)".to_owned(), title }));
    }

    let mut page = Page { svg: String::new(), duration_ms: end };
    let lanes = nodes.len() + 3;
    let height = 30.0 + lanes as f64 * (LANE + GAP) + 50.0;
    let top = 20.0;
    let lane_y = |k: usize| top + k as f64 * (LANE + GAP);
    // Time axis.
    let step_s = [1u64, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1_200, 1_800, 3_600, 7_200]
        .into_iter()
        .find(|s| end / (s * 1000) <= 12)
        .unwrap_or(14_400);
    let axis_y = lane_y(lanes) + 4.0;
    let mut t = 0;
    while t <= end {
        let x = page.x(t);
        let _ = writeln!(
            page.svg,
            r#"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{axis_y:.1}" class="grid"/><text x="{x:.1}" y="{:.1}" class="tick">{} s</text>"#,
            axis_y + 14.0,
            t / 1000
        );
        t += step_s * 1000;
    }
    // Node lanes: roles, then their faults as a hatched strip, then ticks
    // for decision reasons.
    for (i, node) in nodes.iter().enumerate() {
        let y = lane_y(i);
        page.label(y, node);
        let spans: Vec<Span> = roles
            .iter()
            .filter(|(n, _)| n == node)
            .map(|(_, s)| Span { colour: s.colour.clone(), ..clone_span(s) })
            .collect();
        page.spans(y, LANE, &spans, "role");
        let hits: Vec<Span> = faults
            .iter()
            .filter(|(n, _)| n.as_deref() == Some(node.as_str()))
            .map(|(_, s)| clone_span(s))
            .collect();
        page.spans(y + LANE * 0.55, LANE * 0.45, &hits, "fault");
        for ((_, bucket), list) in reasons.range((i, 0)..(i + 1, 0)) {
            let mut title = format!("{node}, decisions:");
            for (t, r) in list.iter().take(REASONS_PER_TITLE) {
                let _ = write!(title, "\n{}: {r}", secs(*t));
            }
            if list.len() > REASONS_PER_TITLE {
                let _ = write!(title, "\n(and {} more)", list.len() - REASONS_PER_TITLE);
            }
            let x = LEFT + *bucket as f64 * REASON_BUCKET_PX;
            page.rect((x, y, REASON_BUCKET_PX - 1.0, LANE * 0.3), "#ffffff", "reason", &title);
        }
    }
    // The leader key's holder.
    let y = lane_y(nodes.len());
    page.label(y, "leader key");
    page.spans(y, LANE, &holders, "holder");
    for (from, to, holder) in &holder_names {
        page.span_text(y, (*from, *to), holder.as_deref().unwrap_or("nobody"));
    }
    // Faults that hit no single node.
    let y = lane_y(nodes.len() + 1);
    page.label(y, "cluster faults");
    let cluster: Vec<Span> = faults.iter().filter(|(n, _)| n.is_none()).map(|(_, s)| clone_span(s)).collect();
    page.spans(y + LANE * 0.2, LANE * 0.6, &cluster, "fault");
    // Client writes per column: acknowledged up from the middle, failed
    // down; equal neighbouring columns merge into one rectangle.
    let y = lane_y(nodes.len() + 2);
    page.label(y, "client writes");
    let col_ms = end as f64 / WIDTH;
    let mut c = 0;
    while c < writes.len() {
        let (ok, failed) = writes[c];
        let mut run = 1;
        while c + run < writes.len() && writes[c + run] == (ok, failed) {
            run += 1;
        }
        if ok + failed > 0 {
            let total = f64::from(ok + failed);
            let (from, to) = ((c as f64 * col_ms) as u64, ((c + run) as f64 * col_ms) as u64);
            let title = format!(
                "{} .. {}: {ok} acknowledged, {failed} failed{}",
                secs(from),
                secs(to),
                if run > 1 { format!(" in each of {run} columns") } else { String::new() }
            );
            let x = LEFT + c as f64;
            let mid = y + LANE / 2.0;
            if ok > 0 {
                let h = LANE / 2.0 * f64::from(ok) / total;
                page.rect((x, mid - h, run as f64, h), "#43a047", "write", &title);
            }
            if failed > 0 {
                let h = LANE / 2.0 * f64::from(failed) / total;
                page.rect((x, mid, run as f64, h), "#e53935", "write", &title);
            }
        }
        c += run;
    }
    // Violations across every lane.
    for (t, text) in &violations {
        let x = page.x(*t);
        let _ = writeln!(
            page.svg,
            r#"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{axis_y:.1}" class="violation"><title>{}</title></line><path d="M{:.1} {:.1} l5 -9 h-10 z" class="violation-mark"><title>{}</title></path>"#,
            esc(&format!("VIOLATION at {}: {text}", secs(*t))),
            x + 5.0 - 5.0,
            top,
            esc(&format!("VIOLATION at {}: {text}", secs(*t)))
        );
    }

    let mut html = String::new();
    let verdict_text = match verdict {
        Some((true, _)) => "all checks passed".to_owned(),
        Some((false, n)) => format!("{n} violation(s)"),
        None => "no verdict in the trace".to_owned(),
    };
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>keel-sim seed {seed}</title>\n<style>\n{CSS}</style></head><body>\n\
         <h1>keel-sim seed {seed}: {}</h1>\n<p class=\"config\">{} nodes, {} simulated; {}</p>\n<p class=\"legend\">",
        esc(&verdict_text),
        nodes.len(),
        secs(duration_ms),
        esc(&config)
    );
    for (role, colour) in ROLES {
        let _ = write!(html, "<span><i style=\"background:{colour}\"></i>{role}</span>");
    }
    let _ = writeln!(
        html,
        "<span><i class=\"fault-key\"></i>fault</span><span><i style=\"background:#43a047\"></i>write acknowledged</span>\
         <span><i style=\"background:#e53935\"></i>write failed / violation</span><span><i style=\"background:#fff;border:1px solid #999\"></i>decision (hover)</span></p>"
    );
    let _ = writeln!(
        html,
        "<svg width=\"{:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {:.0} {height:.0}\" role=\"img\" aria-label=\"timeline\">\n\
         <defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
         <rect width=\"3\" height=\"6\" fill=\"#d32f2f\" fill-opacity=\"0.75\"/></pattern></defs>\n{}</svg>",
        LEFT + WIDTH + 20.0,
        LEFT + WIDTH + 20.0,
        page.svg
    );
    // The faults and violations, as a table too.
    let _ = writeln!(
        html,
        "<h2>Faults</h2>\n<table><tr><th>from</th><th>to</th><th>node</th><th>fault</th></tr>"
    );
    let mut listed: Vec<&(Option<String>, Span)> = faults.iter().collect();
    listed.sort_by_key(|(_, s)| (s.from, s.to));
    for (node, s) in listed {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            secs(s.from),
            secs(s.to),
            esc(node.as_deref().unwrap_or("-")),
            esc(s.title.split_once(": ").map_or(s.title.as_str(), |(_, d)| d))
        );
    }
    let _ = writeln!(html, "</table>\n<h2>Violations</h2>");
    if violations.is_empty() {
        let _ = writeln!(html, "<p>none</p>");
    }
    for (t, text) in &violations {
        let _ = writeln!(html, "<p class=\"violation-text\">{}: {}</p>", secs(*t), esc(text));
    }
    html.push_str("</body></html>\n");
    html
}

fn clone_span(s: &Span) -> Span {
    Span { from: s.from, to: s.to, colour: s.colour.clone(), title: s.title.clone() }
}

const CSS: &str = "body{font:13px system-ui,sans-serif;margin:16px;color:#222}\
h1{font-size:18px}h2{font-size:15px;margin-top:20px}.config{color:#555}\
.legend span{margin-right:14px}.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-2px}\
.fault-key{background:repeating-linear-gradient(45deg,#d32f2f 0 3px,transparent 3px 6px)}\
svg text.lane{text-anchor:end;font-size:12px}svg text.holder-name{text-anchor:middle;font-size:11px;pointer-events:none}svg text.tick{text-anchor:middle;font-size:11px;fill:#666}\
svg .grid{stroke:#ddd;stroke-width:1}svg .fault{fill:url(#hatch);stroke:#b71c1c;stroke-width:.5}\
svg .reason{stroke:#333;stroke-width:.4}svg .violation{stroke:#d50000;stroke-width:2}\
svg .violation-mark{fill:#d50000}svg rect:hover{stroke:#000;stroke-width:1}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}\
.violation-text{color:#d50000}\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t_ms: u64, what: What) -> TraceEvent {
        TraceEvent { t_ms, what }
    }

    #[test]
    fn a_page_has_every_lane_fault_and_violation_and_fetches_nothing() {
        let node = |n: &str| Some(n.to_owned());
        let mut events = vec![
            ev(
                0,
                What::Start {
                    seed: 9,
                    nodes: vec!["pg1".into(), "pg2".into()],
                    duration_ms: 600_000,
                    config: "ttl 30 s".into(),
                },
            ),
            ev(10, What::Role { node: "pg1".into(), role: "primary".into() }),
            ev(10, What::Role { node: "pg2".into(), role: "replica".into() }),
            ev(20, What::LeaderKey { holder: node("pg1") }),
            ev(30, What::Decision { node: "pg1".into(), reason: "I hold the <lease> & more".into() }),
            ev(
                40_000,
                What::FaultStart {
                    fault: "node-crash".into(),
                    node: node("pg1"),
                    detail: "NodeCrash { node: 0 }".into(),
                    until_ms: 50_000,
                },
            ),
            ev(
                41_000,
                What::FaultStart {
                    fault: "etcd-outage".into(),
                    node: None,
                    detail: "EtcdOutage".into(),
                    until_ms: 900_000,
                },
            ),
            ev(
                50_000,
                What::FaultEnd {
                    fault: "node-crash".into(),
                    node: node("pg1"),
                    detail: "NodeCrash { node: 0 }".into(),
                },
            ),
            ev(60_000, What::Violation { text: "split brain: pg1, pg2 all accept writes".into() }),
        ];
        for t in 0..12_000 {
            events.push(ev(t * 50, What::Write { ok: t % 7 != 0, node: node("pg1") }));
        }
        let html = render(&events);
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains("<script"));
        for needle in [
            ">pg1<",
            ">pg2<",
            ">leader key<",
            "NodeCrash { node: 0 }",
            "EtcdOutage",
            "split brain",
            "&lt;lease&gt; &amp; more",
            // The leader key lane says who holds the key.
            r#"class="holder-name">pg1<"#,
        ] {
            assert!(html.contains(needle), "{needle} missing");
        }
        assert!(html.contains("not healed in the trace"), "an open fault still shows");
        println!("page for 12 000 writes: {} bytes", html.len());
        assert!(html.len() < 400_000, "writes are aggregated per column: {} bytes", html.len());
    }

    #[test]
    fn an_empty_trace_still_renders() {
        let html = render(&[]);
        assert!(html.contains("no verdict in the trace"));
    }
}
