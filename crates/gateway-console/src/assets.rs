//! The console's files, embedded at compile time. uPlot 1.6.32 is vendored
//! under `assets/vendor/uplot/` (see `VENDORED.md` there).

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Path under `/console/`.
    pub path: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The bytes.
    pub body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $ty:expr) => {
        Asset {
            path: $path,
            content_type: $ty,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// The page every console address loads; the pages are drawn by
/// `js/app.js`.
pub static INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

/// Everything under `/console/`.
pub static ASSETS: &[Asset] = &[
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/charts.js", JS),
    asset!("js/ui.js", JS),
    asset!("js/pages/overview.js", JS),
    asset!("js/pages/routes.js", JS),
    asset!("js/pages/keys.js", JS),
    asset!("js/pages/cache.js", JS),
    asset!("js/pages/shadow.js", JS),
    asset!("js/pages/fx.js", JS),
    asset!("vendor/uplot/uPlot.esm.js", JS),
    asset!("vendor/uplot/uPlot.min.css", "text/css; charset=utf-8"),
    asset!("vendor/uplot/LICENSE", "text/plain; charset=utf-8"),
];

/// The asset at `path` (under `/console/`).
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_pages_import_is_embedded() {
        // A module the browser cannot load breaks the console silently:
        // every `import ... from "./x.js"` must name an embedded file.
        let re_from = |src: &str| -> Vec<String> {
            src.split("from \"")
                .skip(1)
                .filter_map(|rest| rest.split('"').next())
                .map(str::to_string)
                .collect()
        };
        for a in ASSETS
            .iter()
            .filter(|a| a.path.ends_with(".js") && a.path.starts_with("js/"))
        {
            let src = std::str::from_utf8(a.body).unwrap();
            let dir = a.path.rsplit_once('/').map_or("", |(d, _)| d);
            for import in re_from(src) {
                let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
                for seg in import.split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                let resolved = parts.join("/");
                assert!(
                    find(&resolved).is_some(),
                    "{} imports {import}: not embedded",
                    a.path
                );
            }
        }
    }

    #[test]
    fn nothing_is_loaded_from_another_host() {
        for a in ASSETS.iter().chain([&INDEX]) {
            if a.path.starts_with("vendor/") {
                continue;
            }
            // The SVG namespace is a name, not a fetch.
            let src =
                String::from_utf8_lossy(a.body).replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            assert!(
                !src.contains("https://") && !src.contains("http://"),
                "{} names a remote URL",
                a.path
            );
        }
    }
}
