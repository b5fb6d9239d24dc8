//! Hides the Unix sockets of shared folders: a socket lets the app make whatever listens on
//! it (an ssh agent, tmux, a display) act for it outside the sandbox, read-only share or not.
//!
//! Runs in pid 1, after every share is mounted and before the pivot, on the mounts themselves.
//! Another program may be changing a shared folder meanwhile (another sandbox with it shared
//! read-write, renaming folders about), so a folder is never looked up again by a path that
//! could lead elsewhere: folders are opened one from another without following links, watched
//! (inotify) from before they are read, and read through their descriptors; a socket is opened
//! from its folder's descriptor, checked to be one, and an empty read-only file is attached on
//! that very file. Whatever appears in a watched folder meanwhile (a socket, a folder moved in)
//! is looked at too, until nothing moves. A folder that cannot be looked through completely
//! refuses the launch.
//!
//! Each share has an inotify instance of its own (an instance gives a folder one watch, and one
//! folder may be seen through two shares: two mounts, each with its own files hidden). Only
//! the shares' top folders stay open: a folder an event names is opened again from its
//! share's top, part by part, and must still be the folder that was watched (device and inode);
//! a folder moved meanwhile is found where its move says it went.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use nix::sys::stat::{Mode, fstat};

use super::SetupError;
use super::mounts::Mounts;

/// At most this many entries of the shared folders are looked at (more refuses the launch
/// unless the share says `sockets`).
pub const ENTRY_LIMIT: usize = 200_000;

/// Folders nested deeper than this refuse the launch.
const DEPTH_LIMIT: usize = 256;

/// What a change to a watched folder may bring in.
const WATCHED: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_ONLYDIR);

/// A watched folder: its share, and its watch in that share's inotify instance (one instance
/// per share: an instance gives one watch to one folder, which two shares may both show).
type Watch = (usize, WatchDescriptor);

/// A folder's entries to look at: its sub-folders (`true`), sockets and named pipes (`false`).
type Entries = Vec<(OsString, bool)>;

/// One level of the depth-first walk: a folder, its watch, and its entries still to look at.
type Level = (OwnedFd, Watch, std::vec::IntoIter<(OsString, bool)>);

/// A folder that was read and is watched.
#[derive(Debug)]
struct Folder {
    /// Its folder, `None` for a share's top.
    parent: Option<Watch>,
    name: OsString,
    /// Device and inode.
    id: (u64, u64),
}

/// Hides sockets beneath shared folders; see the module's documentation.
pub struct Hider<'a, M> {
    /// What makes the mounts.
    mounts: &'a M,
    /// The empty read-only file attached over each socket.
    empty: &'a OwnedFd,
    /// One inotify instance per share.
    watchers: Vec<Inotify>,
    folders: HashMap<Watch, Folder>,
    /// The watch of each folder read, by share and device and inode (one folder seen through
    /// two shares is two mounts, each with its own files hidden).
    by_id: HashMap<(usize, u64, u64), Watch>,
    /// Each share: where it is inside, and its top folder.
    shares: Vec<(PathBuf, OwnedFd)>,
    seen: usize,
    /// Sockets and named pipes (`true`) hidden, by share (for the launch's notes).
    hidden: Vec<Vec<(PathBuf, bool)>>,
}

impl<M> std::fmt::Debug for Hider<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hider")
            .field("folders", &self.folders.len())
            .field("seen", &self.seen)
            .finish()
    }
}

fn proc_fd(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn id_of(fd: &OwnedFd) -> nix::Result<(u64, u64)> {
    fstat(fd).map(|st| (st.st_dev, st.st_ino))
}

/// Opens the folder `name` of `dir`, not following a link; `None` when it is gone or is no
/// folder (now).
fn open_folder(dir: &OwnedFd, name: &OsStr) -> nix::Result<Option<OwnedFd>> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Why following the changes stopped.
#[derive(Debug)]
enum Drain {
    /// Changes were missed (the queue overflowed, a folder could not be found again): look
    /// through everything again.
    Lost,
    Failed(SetupError),
}

impl From<SetupError> for Drain {
    fn from(e: SetupError) -> Self {
        Self::Failed(e)
    }
}

impl<'a, M: Mounts> Hider<'a, M> {
    pub fn new(mounts: &'a M, empty: &'a OwnedFd) -> Result<Self, SetupError> {
        Ok(Self {
            mounts,
            empty,
            watchers: Vec::new(),
            folders: HashMap::new(),
            by_id: HashMap::new(),
            shares: Vec::new(),
            seen: 0,
            hidden: Vec::new(),
        })
    }

    fn watcher() -> Result<Inotify, SetupError> {
        Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| SetupError::new("watch shared folders for sockets (inotify)", e))
    }

    /// Looks through the share mounted at `at` (inside), whose top folder is `top` (opened
    /// through the mount), hiding every socket in it.
    pub fn share(&mut self, at: &Path, top: OwnedFd) -> Result<(), SetupError> {
        let again = top
            .try_clone()
            .map_err(|e| SetupError::io(format!("look through {}", at.display()), e))?;
        self.shares.push((at.to_owned(), again));
        self.watchers.push(Self::watcher()?);
        self.hidden.push(Vec::new());
        self.tree(self.shares.len() - 1, top, None, OsString::new())
    }

    /// Where the watched folder `wd` is inside, from its share's top (its parts).
    fn parts(&self, watch: Watch) -> Option<(usize, Vec<OsString>)> {
        let mut parts = Vec::new();
        let mut cur = self.folders.get(&watch)?;
        while let Some(parent) = cur.parent {
            parts.push(cur.name.clone());
            cur = self.folders.get(&parent)?;
            if parts.len() > DEPTH_LIMIT {
                return None;
            }
        }
        parts.reverse();
        Some((watch.0, parts))
    }

    fn inside(&self, share: usize, parts: &[OsString]) -> PathBuf {
        parts
            .iter()
            .fold(self.shares[share].0.clone(), |p, part| p.join(part))
    }

    /// Opens the watched folder `wd` again from its share's top; `None` when it is not where
    /// it was (moved: its move is reported where it went) or is another folder now.
    fn reopen(&self, watch: Watch) -> Result<Option<OwnedFd>, SetupError> {
        let Some((share, parts)) = self.parts(watch) else {
            return Ok(None);
        };
        let top = &self.shares[share].1;
        let mut dir = top
            .try_clone()
            .map_err(|e| SetupError::io("look through a share again".into(), e))?;
        for (i, part) in parts.iter().enumerate() {
            dir = match open_folder(&dir, part) {
                Ok(Some(next)) => next,
                Ok(None) => return Ok(None),
                Err(e) => {
                    let at = self.inside(share, &parts[..=i]);
                    return Err(refuse(&at, format!("it cannot be looked through ({e})")));
                }
            };
        }
        let same = id_of(&dir).ok() == self.folders.get(&watch).map(|f| f.id);
        Ok(same.then_some(dir))
    }

    /// Reads the folder `top` (named `name` in the watched folder `parent`) and everything
    /// beneath it, watching each folder before it is read; folders read already (moved about
    /// since) are not read again, only recorded where they are now.
    fn tree(
        &mut self,
        share: usize,
        top: OwnedFd,
        parent: Option<Watch>,
        name: OsString,
    ) -> Result<(), SetupError> {
        // Depth first, one open folder per level.
        let mut stack: Vec<Level> = Vec::new();
        let mut next = Some((top, parent, name));
        loop {
            if let Some((dir, parent, name)) = next.take()
                && let Some((wd, entries)) = self.read(share, &dir, parent, name)?
            {
                if stack.len() >= DEPTH_LIMIT {
                    let (s, parts) = self.parts(wd).unwrap_or((share, Vec::new()));
                    return Err(refuse(
                        &self.inside(s, &parts),
                        format!("its folders nest more than {DEPTH_LIMIT} deep"),
                    ));
                }
                stack.push((dir, wd, entries.into_iter()));
            }
            let Some((dir, wd, entries)) = stack.last_mut() else {
                return Ok(());
            };
            match entries.next() {
                Some((name, true)) => {
                    match open_folder(dir, &name) {
                        Ok(Some(sub)) => next = Some((sub, Some(*wd), name)),
                        // Gone or no folder now: the watch reports what takes its place.
                        Ok(None) => {}
                        Err(e) => {
                            let (s, parts) = self.parts(*wd).unwrap_or((share, Vec::new()));
                            let at = self.inside(s, &parts).join(&name);
                            return Err(refuse(&at, format!("it cannot be looked through ({e})")));
                        }
                    }
                }
                Some((name, false)) => {
                    let wd = *wd;
                    let dir = dir
                        .try_clone()
                        .map_err(|e| SetupError::io("look through a share".into(), e))?;
                    self.hide(&dir, wd, &name)?;
                }
                None => {
                    stack.pop();
                }
            }
        }
    }

    /// Watches, then reads, the folder `dir`: its sub-folders (`true`) and sockets (`false`).
    /// `None` when it was read before (only its place is recorded anew).
    fn read(
        &mut self,
        share: usize,
        dir: &OwnedFd,
        parent: Option<Watch>,
        name: OsString,
    ) -> Result<Option<(Watch, Entries)>, SetupError> {
        let where_ = |me: &Self| {
            parent
                .and_then(|p| me.parts(p))
                .map(|(s, parts)| me.inside(s, &parts).join(&name))
                .unwrap_or_else(|| me.shares[share].0.clone())
        };
        let id = id_of(dir)
            .map_err(|e| refuse(&where_(self), format!("it cannot be looked at ({e})")))?;
        if let Some(&watch) = self.by_id.get(&(share, id.0, id.1)) {
            // Read already: it was moved about. Its sockets are hidden; it is here now.
            if let Some(folder) = self.folders.get_mut(&watch)
                && folder.parent.is_some()
            {
                folder.parent = parent;
                folder.name = name;
            }
            return Ok(None);
        }
        let wd = self.watchers[share]
            .add_watch(&proc_fd(dir), WATCHED)
            .map_err(|e| {
                refuse(
                    &where_(self),
                    format!(
                        "it cannot be watched while it is looked through ({e}; see \
                     fs.inotify.max_user_watches)"
                    ),
                )
            })?;
        let at = where_(self);
        let watch = (share, wd);
        self.folders.insert(watch, Folder { parent, name, id });
        self.by_id.insert((share, id.0, id.1), watch);
        let mut found = Vec::new();
        let entries = std::fs::read_dir(proc_fd(dir))
            .map_err(|e| refuse(&at, format!("it cannot be read ({e})")))?;
        for entry in entries {
            let entry = entry.map_err(|e| refuse(&at, format!("it cannot be read ({e})")))?;
            self.count(&at)?;
            match entry.file_type() {
                Ok(t) if t.is_dir() => found.push((entry.file_name(), true)),
                Ok(t) if t.is_socket() || t.is_fifo() => found.push((entry.file_name(), false)),
                _ => {}
            }
        }
        Ok(Some((watch, found)))
    }

    fn count(&mut self, path: &Path) -> Result<(), SetupError> {
        self.seen += 1;
        if self.seen > ENTRY_LIMIT {
            return Err(refuse(
                path,
                format!(
                    "the shared folders hold more than {ENTRY_LIMIT} entries, too many to look \
                     through for sockets"
                ),
            ));
        }
        Ok(())
    }

    /// Hides `name` in `dir` (the watched folder `wd`) if it is a socket now.
    fn hide(&mut self, dir: &OwnedFd, watch: Watch, name: &OsStr) -> Result<(), SetupError> {
        let (share, parts) = self.parts(watch).unwrap_or((watch.0, Vec::new()));
        let at = self.inside(share, &parts).join(name);
        let found = openat(
            dir,
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        );
        let socket = match found {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(SetupError::new(format!("hide {}", at.display()), e)),
        };
        // A named pipe is a way to drive a program outside too (one that reads commands from
        // it), and a read-only mount does not stop writes to one: hidden alike.
        let kind = fstat(&socket).map(|st| st.st_mode & libc::S_IFMT);
        if !matches!(kind, Ok(libc::S_IFSOCK | libc::S_IFIFO)) {
            return Ok(());
        }
        super::mounts::attach(
            self.mounts,
            self.empty.as_fd(),
            socket.as_fd(),
            crate::plan::Access::ReadOnly,
            false,
        )
        .map_err(|e| SetupError::io(format!("hide the socket {}", at.display()), e))?;
        let top = &self.shares[share].0;
        let rel = at.strip_prefix(top).unwrap_or(&at).to_owned();
        self.hidden[share].push((rel, kind == Ok(libc::S_IFIFO)));
        Ok(())
    }

    /// Looks at whatever appeared in a watched folder since it was read, until nothing new
    /// comes (every share read first). Should the watches lose track (their queue overflowed,
    /// a folder could not be found again), everything is looked through again, a few times at
    /// most.
    pub fn settle(&mut self) -> Result<(), SetupError> {
        let mut restarts = 0;
        loop {
            match self.drain() {
                Ok(()) => return Ok(()),
                Err(Drain::Failed(e)) => return Err(e),
                Err(Drain::Lost) if restarts < 3 => {
                    restarts += 1;
                    self.restart()?;
                }
                Err(Drain::Lost) => {
                    return Err(SetupError::new(
                        "look through shared folders for sockets",
                        "they kept changing too fast to follow (another program is writing \
                         there): the launch is refused; try again",
                    ));
                }
            }
        }
    }

    /// Handles the watches' events until there are none.
    fn drain(&mut self) -> Result<(), Drain> {
        loop {
            // In the order they came (a folder's move before what then happened in it), each
            // name once (a folder renamed back and forth comes as many events).
            let mut names: Vec<(Watch, OsString)> = Vec::new();
            for (share, watcher) in self.watchers.iter().enumerate() {
                let events = match watcher.read_events() {
                    Ok(events) => events,
                    Err(Errno::EAGAIN) => continue,
                    Err(_) => return Err(Drain::Lost),
                };
                for event in events {
                    if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                        return Err(Drain::Lost);
                    }
                    if let Some(name) = event.name {
                        let key = ((share, event.wd), name);
                        if !names.contains(&key) {
                            names.push(key);
                        }
                    }
                }
            }
            if names.is_empty() {
                return Ok(());
            }
            for (watch, name) in names {
                if !self.folders.contains_key(&watch) {
                    continue;
                }
                let Some(dir) = self.reopen(watch)? else {
                    // Not where it was: moved, or gone. What came into it meanwhile is
                    // reported where it is now only if it came after: to miss nothing, look
                    // through everything again.
                    return Err(Drain::Lost);
                };
                let (share, parts) = self.parts(watch).unwrap_or((watch.0, Vec::new()));
                self.count(&self.inside(share, &parts))?;
                match open_folder(&dir, &name) {
                    Ok(Some(sub)) => self.tree(share, sub, Some(watch), name)?,
                    Ok(None) => self.hide(&dir, watch, &name)?,
                    Err(e) => {
                        let at = self.inside(share, &parts).join(&name);
                        return Err(Drain::Failed(refuse(
                            &at,
                            format!("it cannot be looked through ({e})"),
                        )));
                    }
                }
            }
        }
    }

    /// Starts over with fresh watches: every share looked through again (sockets hidden
    /// already are empty files now).
    fn restart(&mut self) -> Result<(), SetupError> {
        for watcher in &mut self.watchers {
            *watcher = Self::watcher()?;
        }
        self.folders.clear();
        self.by_id.clear();
        self.seen = 0;
        for share in 0..self.shares.len() {
            let top = self.shares[share]
                .1
                .try_clone()
                .map_err(|e| SetupError::io("look through a share again".into(), e))?;
            self.tree(share, top, None, OsString::new())?;
        }
        Ok(())
    }

    /// What the launch is told: the sockets hidden in each share.
    pub fn notes(&self) -> Vec<String> {
        self.shares
            .iter()
            .zip(&self.hidden)
            .filter(|(_, list)| !list.is_empty())
            .map(|((share, _), list)| {
                let names: Vec<String> = list
                    .iter()
                    .take(3)
                    .map(|(p, _)| p.display().to_string())
                    .collect();
                let pipes = list.iter().filter(|(_, pipe)| *pipe).count();
                let count = |n: usize, one: &str, many: &str| {
                    (n > 0).then(|| format!("{n} {}", if n == 1 { one } else { many }))
                };
                let what: Vec<String> = [
                    count(list.len() - pipes, "Unix socket", "Unix sockets"),
                    count(pipes, "named pipe", "named pipes"),
                ]
                .into_iter()
                .flatten()
                .collect();
                format!(
                    "{} holds {} ({}{}): hidden from the app, so nothing listening there can \
                     act for it (add `,sockets` to the share to keep them)",
                    share.display(),
                    what.join(" and "),
                    names.join(", "),
                    if list.len() > 3 { ", …" } else { "" }
                )
            })
            .collect()
    }
}

fn refuse(path: &Path, why: String) -> SetupError {
    SetupError::new(
        format!("look through {} for sockets", path.display()),
        format!(
            "{why}. The launch is refused: a socket left reachable lets the app make what listens \
             there act for it. Share a smaller folder, or add `,sockets` to the share if its \
             sockets may be reached"
        ),
    )
}
