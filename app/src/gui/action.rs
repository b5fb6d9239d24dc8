//! What the views ask for. A view reads the model and the UI state, edits only its own form,
//! and pushes [`Action`]s; [`HutchApp::apply`](super::app::HutchApp::apply) carries each one
//! out: requests to the helper, profile files, the UI state.

use std::path::PathBuf;

use hutch_core::profile::Profile;

use super::forms::NewProfileForm;
use super::state::{DetailTab, Page, Span};

/// One thing the user asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Show a page (the profiles page lists the profile files again).
    ShowPage(Page),
    /// Show a sandbox's details.
    Select(String),
    /// Show a tab of the details (its list is asked for at once).
    ShowTab(DetailTab),
    /// How much time the graphs show.
    SetSpan(Span),
    /// Hide the toasts of the first this many notices.
    DismissToasts(usize),
    Stop(String),
    Pause(String),
    Resume(String),
    /// Start an exited sandbox's app again, the same way.
    RunAgain(String),
    /// Ask for a sandbox's anatomy again.
    Inspect(String),
    /// Run the system check again.
    CheckSystem,
    /// The "Launch…" file chooser, in the home folder.
    OpenChooser,
    /// Close the dialog without doing anything.
    CloseDialog,
    /// Launch a chosen file as if dropped (closes the dialog).
    OpenPath(PathBuf),
    /// The first-launch dialog's "Create and run": its profile, then the launch.
    CreateProfile(NewProfileForm),
    /// Open a data file with an app profile, sharing that file alone (closes the dialog).
    OpenWith {
        path: PathBuf,
        profile: String,
        writable: bool,
    },
    /// Edit a profile's settings.
    EditProfile(String),
    /// Write the edited profile and give its new limits to the app's running sandboxes.
    SaveProfile(Profile),
}
