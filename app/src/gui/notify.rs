//! Desktop notifications (org.freedesktop.Notifications on the session bus), sent from a
//! thread of their own. Without a session bus or a notification service they are skipped:
//! the window shows every notice anyway.

use std::collections::HashMap;
use std::sync::mpsc;

use super::model::{Level, Notice};

#[derive(Debug)]
pub struct Notifier {
    tx: mpsc::Sender<Notice>,
}

impl Notifier {
    /// Starts the sender thread, or `None` when no session bus is set.
    pub fn start() -> Option<Self> {
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS")?;
        let (tx, rx) = mpsc::channel::<Notice>();
        std::thread::Builder::new()
            .name("hutch-notify".into())
            .spawn(move || {
                let Ok(conn) = zbus::blocking::Connection::session() else {
                    return;
                };
                for notice in rx {
                    let urgency: u8 = match notice.level {
                        Level::Info => 0,
                        Level::Warning => 1,
                        Level::Error => 2,
                    };
                    let mut hints: HashMap<&str, zbus::zvariant::Value<'_>> = HashMap::new();
                    hints.insert("urgency", urgency.into());
                    hints.insert("desktop-entry", "io.github.hutchbox.Hutch".into());
                    let sent = conn.call_method(
                        Some("org.freedesktop.Notifications"),
                        "/org/freedesktop/Notifications",
                        Some("org.freedesktop.Notifications"),
                        "Notify",
                        &(
                            "Hutch",
                            0u32,
                            "io.github.hutchbox.Hutch",
                            notice.title.as_str(),
                            notice.body.as_str(),
                            Vec::<&str>::new(),
                            hints,
                            -1i32,
                        ),
                    );
                    if let Err(e) = sent {
                        tracing::debug!("no desktop notification: {e}");
                    }
                }
            })
            .ok()?;
        Some(Self { tx })
    }

    pub fn send(&self, notice: &Notice) {
        let _ = self.tx.send(notice.clone());
    }
}
