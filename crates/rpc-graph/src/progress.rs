//! [`Progress`]: optional progress bars for long steps (generate, load,
//! partition), off for library users and tests unless asked for.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether long operations draw progress bars on stderr. Bars are hidden
/// anyway when stderr is not a terminal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    /// No bars (the default).
    #[must_use]
    pub fn hidden() -> Self {
        Self { enabled: false }
    }

    /// Bars on stderr, when it is a terminal.
    #[must_use]
    pub fn stderr() -> Self {
        Self { enabled: true }
    }

    /// Starts a stage of `total` units named `name`.
    #[must_use]
    pub fn stage(&self, name: &str, total: u64) -> Stage {
        if !self.enabled {
            return Stage {
                bar: ProgressBar::hidden(),
            };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({elapsed}, eta {eta})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(name.to_string());
        Stage { bar }
    }
}

/// One running stage; cheap to clone into worker threads.
#[derive(Clone, Debug)]
pub struct Stage {
    bar: ProgressBar,
}

impl Stage {
    /// Advances by `n` units.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Ends the stage, leaving the finished bar on screen.
    pub fn finish(&self) {
        self.bar.finish();
    }
}
