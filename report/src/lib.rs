//! Self-contained HTML reports: one file with its styles, data and charting library inlined
//! (uPlot 1.6, MIT, in `assets/`), so a report opens anywhere without a network. Charts have
//! axes with units, a legend that shows the values under the cursor, threshold lines and
//! shaded time bands (a fault window, a load stage).

#[cfg(feature = "browser")]
pub mod browser;

use std::fmt::Write as _;

use serde_json::json;

const UPLOT_JS: &str = include_str!("../assets/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../assets/uPlot.min.css");

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;width:100%;table-layout:auto;font-size:14px}\
td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top;overflow-wrap:anywhere}\
th{background:#f5f5f5}.chart{width:100%;margin:1em 0}.note{color:#555}";

/// Draws shaded x ranges and labels them; `bands` is `[[from, to, label], …]`.
const BANDS_PLUGIN: &str = "function sloopBands(bands){return{hooks:{drawClear:[u=>{const c=u.ctx;c.save();\
for(const [a,b,label] of bands){const x0=u.valToPos(a,'x',true),x1=u.valToPos(b,'x',true);\
c.fillStyle='rgba(198,40,40,0.10)';c.fillRect(x0,u.bbox.top,x1-x0,u.bbox.height);\
c.fillStyle='#c62828';c.font=(12*devicePixelRatio)+'px sans-serif';c.fillText(label,x0+4,u.bbox.top+14*devicePixelRatio);}\
c.restore();}]}};}";

/// Bar mode for categorical charts: a tick named for each category, the data series drawn
/// as bars (threshold lines stay lines).
const CATEGORIES_PLUGIN: &str = "function sloopCategories(opts,cats){if(!cats.length)return;\
opts.axes[0].splits=()=>cats.map((_,i)=>i);opts.axes[0].values=(u,vals)=>vals.map(v=>cats[v]??'');\
opts.series.forEach((s,i)=>{if(i>0&&!s.dash){s.paths=uPlot.paths.bars({size:[0.6,120]});s.fill=s.stroke+'cc';s.points={show:false};}});}";

/// A line chart over a shared x axis, or a bar chart over named categories.
#[derive(Debug, Clone)]
pub struct Chart {
    title: String,
    x_label: String,
    y_label: String,
    series: Vec<(String, Vec<(f64, f64)>)>,
    thresholds: Vec<(f64, String)>,
    bands: Vec<(f64, f64, String)>,
    log_x: bool,
    /// Bar mode: x values are indexes into these names.
    categories: Vec<String>,
}

impl Chart {
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Self {
        Self {
            title: title.to_owned(),
            x_label: x_label.to_owned(),
            y_label: y_label.to_owned(),
            series: Vec::new(),
            thresholds: Vec::new(),
            bands: Vec::new(),
            log_x: false,
            categories: Vec::new(),
        }
    }

    /// A logarithmic x axis (positive xs only), e.g. for a latency spectrum.
    pub fn log_x(mut self) -> Self {
        self.log_x = true;
        self
    }

    /// Bars over named categories: a series' points are (category index, value). Meant for
    /// one data series (more would draw over each other), plus any thresholds.
    pub fn categories(mut self, names: &[String]) -> Self {
        self.categories = names.to_vec();
        self
    }

    /// A named line through `points` (x, y); points need not share x values across series.
    pub fn series(mut self, name: &str, points: &[(f64, f64)]) -> Self {
        self.series.push((name.to_owned(), points.to_vec()));
        self
    }

    /// A dashed horizontal line at `value`.
    pub fn threshold(mut self, value: f64, label: &str) -> Self {
        self.thresholds.push((value, label.to_owned()));
        self
    }

    /// A shaded x range.
    pub fn band(mut self, from: f64, to: f64, label: &str) -> Self {
        self.bands.push((from, to, label.to_owned()));
        self
    }

    /// uPlot wants one x column and a y column per series, aligned: the union of all xs,
    /// with `null` where a series has no point.
    fn aligned(&self) -> serde_json::Value {
        let mut xs: Vec<f64> = self
            .series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
            .filter(|x| x.is_finite())
            .collect();
        if xs.is_empty() {
            xs = self.bands.iter().flat_map(|(a, b, _)| [*a, *b]).collect();
        }
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        let mut columns = vec![json!(xs)];
        for (_, points) in &self.series {
            let column: Vec<Option<f64>> = xs
                .iter()
                .map(|x| {
                    points
                        .iter()
                        .find(|(px, _)| px == x)
                        .map(|(_, y)| *y)
                        .filter(|y| y.is_finite())
                })
                .collect();
            columns.push(json!(column));
        }
        for (value, _) in &self.thresholds {
            columns.push(json!(vec![*value; xs.len()]));
        }
        json!(columns)
    }

    fn render(&self, id: usize) -> String {
        const COLOURS: [&str; 6] = [
            "#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a", "#00838f", "#5d4037",
        ];
        let mut series = vec![json!({ "label": self.x_label })];
        for (i, (name, _)) in self.series.iter().enumerate() {
            series.push(json!({
                "label": name,
                "stroke": COLOURS[i % COLOURS.len()],
                "width": 2,
                "spanGaps": false,
            }));
        }
        for (_, label) in &self.thresholds {
            series.push(json!({
                "label": label,
                "stroke": "#c62828",
                "dash": [6, 4],
                "width": 1,
                "points": { "show": false },
            }));
        }
        let bands: Vec<serde_json::Value> = self
            .bands
            .iter()
            .map(|(a, b, label)| json!([a, b, label]))
            .collect();
        let mut x_scale = json!({ "time": false });
        if self.log_x {
            x_scale["distr"] = json!(3);
        }
        if !self.categories.is_empty() {
            x_scale["range"] = json!([-0.5, self.categories.len() as f64 - 0.5]);
        }
        let options = json!({
            "title": self.title,
            "height": 320,
            "scales": { "x": x_scale },
            "axes": [
                { "label": self.x_label },
                { "label": self.y_label, "size": 70 },
            ],
            "series": series,
        });
        format!(
            "<div class=\"chart\" id=\"chart{id}\"></div><script>(()=>{{const el=document.getElementById('chart{id}');\
const opts={options};opts.width=el.clientWidth;opts.plugins=[sloopBands({bands})];sloopCategories(opts,{categories});\
const u=new uPlot(opts,{data},el);addEventListener('resize',()=>u.setSize({{width:el.clientWidth,height:320}}));}})();</script>",
            options = script_safe(&options),
            bands = script_safe(&json!(bands)),
            categories = script_safe(&json!(self.categories)),
            data = script_safe(&self.aligned()),
        )
    }
}

/// An HTML page built from blocks, in order.
#[derive(Debug, Clone)]
pub struct Page {
    title: String,
    body: String,
    charts: usize,
}

impl Page {
    pub fn new(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            body: String::new(),
            charts: 0,
        }
    }

    pub fn heading(&mut self, text: &str) {
        let _ = write!(self.body, "<h2>{}</h2>", escape(text));
    }

    pub fn paragraph(&mut self, text: &str) {
        let _ = write!(self.body, "<p>{}</p>", escape(text));
    }

    /// Preformatted text, e.g. a terminal table.
    pub fn preformatted(&mut self, text: &str) {
        let _ = write!(self.body, "<pre>{}</pre>", escape(text));
    }

    pub fn table(&mut self, headers: &[&str], rows: Vec<Vec<String>>) {
        self.body.push_str("<table><thead><tr>");
        for h in headers {
            let _ = write!(self.body, "<th>{}</th>", escape(h));
        }
        self.body.push_str("</tr></thead><tbody>");
        for row in rows {
            self.body.push_str("<tr>");
            for cell in row {
                let _ = write!(self.body, "<td>{}</td>", escape(&cell));
            }
            self.body.push_str("</tr>");
        }
        self.body.push_str("</tbody></table>");
    }

    pub fn chart(&mut self, chart: Chart) {
        self.charts += 1;
        self.body.push_str(&chart.render(self.charts));
    }

    pub fn render(&self) -> String {
        let library = if self.charts > 0 {
            format!(
                "<style>{UPLOT_CSS}</style><script>{UPLOT_JS}</script><script>{BANDS_PLUGIN}{CATEGORIES_PLUGIN}</script>"
            )
        } else {
            String::new()
        };
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{title}</title><style>{STYLE}</style>{library}</head><body><h1>{title}</h1>{body}</body></html>",
            title = escape(&self.title),
            body = self.body,
        )
    }
}

/// `value` as a JavaScript literal that cannot end its `<script>` element: `<` only occurs
/// inside JSON strings, where `<\/` and `<\!` read as `</` and `<!`.
fn script_safe(value: &serde_json::Value) -> String {
    value
        .to_string()
        .replace("</", "<\\/")
        .replace("<!", "<\\!")
}

/// Text made safe inside HTML elements and attributes.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_carries_its_library_only_when_it_has_charts() {
        let mut page = Page::new("t <1>");
        page.paragraph("a & b");
        let html = page.render();
        assert!(html.contains("<title>t &lt;1&gt;</title>"));
        assert!(html.contains("a &amp; b"));
        assert!(!html.contains("uPlot"));

        page.chart(Chart::new("c", "s", "x").series("one", &[(0.0, 1.0), (1.0, 2.0)]));
        let html = page.render();
        assert!(html.contains("new uPlot("));
        assert!(
            !html.contains("<script src="),
            "nothing is fetched from the network"
        );
    }

    #[test]
    fn names_cannot_close_the_script() {
        let mut page = Page::new("t");
        page.chart(Chart::new("</script><b>x", "s", "y").series("<!-- a", &[(0.0, 1.0)]));
        let html = page.render();
        assert!(!html.contains("</script><b>"), "{html}");
        assert!(html.contains("<\\/script><b>x"));
        assert!(!html.contains("\"<!-- a"));
    }

    #[test]
    fn series_are_aligned_on_the_union_of_their_xs() {
        let chart = Chart::new("c", "s", "y")
            .series("a", &[(0.0, 1.0), (2.0, 3.0)])
            .series("b", &[(1.0, 5.0)])
            .threshold(14.4, "page");
        assert_eq!(
            chart.aligned(),
            json!([
                [0.0, 1.0, 2.0],
                [1.0, null, 3.0],
                [null, 5.0, null],
                [14.4, 14.4, 14.4]
            ])
        );
    }
}
