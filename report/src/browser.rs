//! Checks a report the way a person sees it: rendered by a real headless Chromium at a
//! laptop's width, with its scripts run, every element is measured. A report passes when
//! the page does not scroll sideways and no element ends past the page's edge, or spills,
//! clips or scrolls its own content. For tests of the tools that write reports.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A laptop screen: 1366 CSS pixels wide.
pub const LAYOUT_WIDTH: u32 = 1366;

#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error(
        "Chromium is not installed: `apt-get install chromium` (./scripts/test.sh does), or set CHROMIUM to its path"
    )]
    Missing,
    #[error("Chromium failed on {page}: {message}")]
    Failed { page: String, message: String },
    #[error("cannot write the page to check: {0}")]
    Io(#[from] std::io::Error),
}

/// Measures every element once the page has loaded and drawn its charts, and appends what
/// is wrong as JSON in `<pre id="sloop-layout-check">`.
const CHECK: &str = r#"<script>addEventListener('load',()=>setTimeout(()=>{
const W=document.documentElement.clientWidth,bad=[];
if(document.documentElement.scrollWidth>W+1)bad.push('the page scrolls sideways: '+document.documentElement.scrollWidth+'px wide in '+W+'px');
for(const el of document.body.querySelectorAll('*')){
const r=el.getBoundingClientRect();if(r.width===0&&r.height===0)continue;
const name=el.tagName.toLowerCase()+(el.id?'#'+el.id:'')+(typeof el.className==='string'&&el.className?'.'+el.className.trim().split(/\s+/).join('.'):'');
const text=(el.textContent||'').trim().slice(0,40);
if(r.right>W+1)bad.push(name+' ("'+text+'") ends at '+Math.round(r.right)+'px, past the page edge at '+W+'px');
if(el.clientWidth>0&&el.scrollWidth>el.clientWidth+1)bad.push(name+' ("'+text+'") '+(getComputedStyle(el).overflowX==='visible'?'spills its content':'clips or scrolls its content')+': '+el.scrollWidth+'px in '+el.clientWidth+'px');}
const out=document.createElement('pre');out.id='sloop-layout-check';out.style.display='none';out.textContent=JSON.stringify(bad);document.body.appendChild(out);},500));</script>"#;

fn chromium() -> Result<String, BrowserError> {
    if let Ok(path) = std::env::var("CHROMIUM") {
        return Ok(path);
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(str::to_owned)
        .ok_or(BrowserError::Missing)
}

/// What is wrong with `html`'s layout at `width` CSS pixels: empty when nothing overflows
/// or is clipped.
pub fn layout_problems(html: &str, width: u32) -> Result<Vec<String>, BrowserError> {
    let dir = scratch_dir()?;
    let page = dir.join("report.html");
    let checked = match html.rfind("</body>") {
        Some(end) => format!("{}{CHECK}{}", &html[..end], &html[end..]),
        None => format!("{html}{CHECK}"),
    };
    std::fs::write(&page, checked)?;
    let result = run_chromium(&page, &dir, width);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn scratch_dir() -> std::io::Result<PathBuf> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("report-check-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn run_chromium(page: &Path, profile: &Path, width: u32) -> Result<Vec<String>, BrowserError> {
    let failed = |message: String| BrowserError::Failed {
        page: page.display().to_string(),
        message,
    };
    let out = Command::new(chromium()?)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--window-size={width},900"))
        .arg(format!(
            "--user-data-dir={}",
            profile.join("profile").display()
        ))
        .arg(format!("file://{}", page.display()))
        .output()
        .map_err(|e| failed(e.to_string()))?;
    let dom = String::from_utf8_lossy(&out.stdout);
    let start = "<pre id=\"sloop-layout-check\" style=\"display: none;\">";
    let Some(found) = dom.find(start) else {
        return Err(failed(format!(
            "the check never ran (exit {:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" | ")
        )));
    };
    let body = &dom[found + start.len()..];
    let json = body[..body.find("</pre>").unwrap_or(body.len())]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    serde_json::from_str(&json).map_err(|e| failed(format!("unreadable result {json}: {e}")))
}
