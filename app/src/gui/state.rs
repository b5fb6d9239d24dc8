//! What the window shows besides the model: the page, the selected sandbox, its tab and the
//! graphs' span, how many notices were dismissed. Views read it; only
//! [`HutchApp::apply`](super::app::HutchApp::apply) changes it.

/// The pages of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Sandboxes,
    Profiles,
    SystemCheck,
}

/// The tabs of a sandbox's details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetailTab {
    Graphs,
    Processes,
    Output,
    Anatomy,
}

/// How much time the graphs show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Minute,
    TenMinutes,
    Hour,
}

impl Span {
    pub fn ms(self) -> u64 {
        match self {
            Self::Minute => 60_000,
            Self::TenMinutes => 600_000,
            Self::Hour => 3_600_000,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Minute => "1 min",
            Self::TenMinutes => "10 min",
            Self::Hour => "1 h",
        }
    }
}

/// Where the window is: read by the views, changed by [`Action`](super::action::Action)s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiState {
    pub page: Page,
    pub selected: Option<String>,
    pub tab: DetailTab,
    pub span: Span,
    /// Notices shown as toasts until this many are dismissed.
    pub toasts_seen: usize,
}

impl Default for UiState {
    fn default() -> Self {
        Self {
            page: Page::Sandboxes,
            selected: None,
            tab: DetailTab::Graphs,
            span: Span::Minute,
            toasts_seen: 0,
        }
    }
}
