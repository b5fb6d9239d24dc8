//! Hides the Unix sockets of shared folders: a socket lets the app make whatever listens on
//! it (an ssh agent, tmux, a display) act for it outside the sandbox, read-only share or not.
//!
//! Runs in pid 1, after every share is mounted and before the pivot, on the mounts themselves.
//! Another program may be changing a shared folder meanwhile (another sandbox with it shared
//! read-write, renaming folders about): so nothing is looked up by a path twice. Folders are
//! opened one from another without following links and read through their descriptors, each
//! watched (inotify) from before it is read; a socket is opened from its folder's descriptor,
//! checked to be one, and an empty read-only file is attached on that very file. Whatever
//! appears in a watched folder meanwhile (a socket, a folder moved in) is looked at too, until
//! nothing moves. A folder that cannot be looked through completely refuses the launch.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use nix::sys::stat::{Mode, fstat};

use super::SetupError;

/// At most this many entries of the shared folders are looked at (a larger share is refused
/// unless it says `sockets`).
pub const ENTRY_LIMIT: usize = 200_000;

/// What a change to a watched folder may bring in.
const WATCHED: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_ONLYDIR);

/// Hides sockets beneath shared folders; see the module's documentation.
pub struct Hider<'a> {
    /// The empty read-only file attached over each socket.
    empty: &'a OwnedFd,
    inotify: Inotify,
    /// Each watched folder's descriptor and its path inside the sandbox.
    folders: HashMap<WatchDescriptor, (OwnedFd, PathBuf)>,
    /// The folders read (device, inode): a folder moved about is not read again.
    read: HashSet<(u64, u64)>,
    /// Every share's root folder, to look through again if the watches lost track.
    shares: Vec<(PathBuf, OwnedFd)>,
    seen: usize,
    /// Sockets hidden, by share (for the launch's notes).
    pub hidden: Vec<(PathBuf, Vec<PathBuf>)>,
}

impl std::fmt::Debug for Hider<'_> {
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

impl<'a> Hider<'a> {
    pub fn new(empty: &'a OwnedFd) -> Result<Self, SetupError> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| SetupError::new("watch shared folders for sockets (inotify)", e))?;
        Ok(Self {
            empty,
            inotify,
            folders: HashMap::new(),
            read: HashSet::new(),
            shares: Vec::new(),
            seen: 0,
            hidden: Vec::new(),
        })
    }

    /// Looks through the share mounted at `at` (inside), whose root folder is `root` (opened
    /// through the mount), hiding every socket in it.
    pub fn share(&mut self, at: &Path, root: OwnedFd) -> Result<(), SetupError> {
        self.hidden.push((at.to_owned(), Vec::new()));
        let again = root
            .try_clone()
            .map_err(|e| SetupError::io(format!("look through {}", at.display()), e))?;
        self.shares.push((at.to_owned(), again));
        self.folder(root, at.to_owned())
    }

    /// Watches, then reads the folder `dir` (at `path` inside), and everything beneath it.
    fn folder(&mut self, dir: OwnedFd, path: PathBuf) -> Result<(), SetupError> {
        let mut todo = vec![(dir, path)];
        while let Some((dir, path)) = todo.pop() {
            let id = fstat(&dir)
                .map(|st| (st.st_dev, st.st_ino))
                .map_err(|e| SetupError::new(format!("look through {}", path.display()), e))?;
            if !self.read.insert(id) {
                // Read already (it was moved about since): its sockets are hidden, and its
                // watch reports what comes into it.
                continue;
            }
            let wd = self.inotify.add_watch(&proc_fd(&dir), WATCHED).map_err(|e| {
                refuse(
                    &path,
                    format!("it cannot be watched while it is looked through ({e}; see fs.inotify.max_user_watches)"),
                )
            })?;
            let entries = std::fs::read_dir(proc_fd(&dir))
                .map_err(|e| refuse(&path, format!("it cannot be read ({e})")))?;
            for entry in entries {
                let entry = entry.map_err(|e| refuse(&path, format!("it cannot be read ({e})")))?;
                self.count(&path)?;
                let name = entry.file_name();
                match entry.file_type() {
                    Ok(t) if t.is_dir() => {
                        if let Some(sub) = self.open_folder(&dir, &name, &path)? {
                            todo.push(sub);
                        }
                    }
                    Ok(t) if t.is_socket() => self.hide(&dir, &name, &path)?,
                    _ => {}
                }
            }
            self.folders.insert(wd, (dir, path));
        }
        Ok(())
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

    /// Opens the folder `name` of `dir` (not following a link); `None` when it is gone or is
    /// no folder now (a change that the watch on `dir` reports if it brings one back).
    fn open_folder(
        &self,
        dir: &OwnedFd,
        name: &OsStr,
        path: &Path,
    ) -> Result<Option<(OwnedFd, PathBuf)>, SetupError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(dir, name, flags, Mode::empty()) {
            Ok(fd) => Ok(Some((fd, path.join(name)))),
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => Ok(None),
            Err(e) => Err(refuse(
                &path.join(name),
                format!("it cannot be looked through ({e}): sockets in it could not be hidden"),
            )),
        }
    }

    /// Hides `name` in `dir` if it is a socket now.
    fn hide(&mut self, dir: &OwnedFd, name: &OsStr, path: &Path) -> Result<(), SetupError> {
        let found = openat(
            dir,
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        );
        let socket = match found {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => {
                return Err(SetupError::new(
                    format!("hide {}", path.join(name).display()),
                    e,
                ));
            }
        };
        let is_socket = fstat(&socket).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK);
        if !is_socket {
            return Ok(());
        }
        super::rootfs::attach(
            self.empty.as_fd(),
            socket.as_fd(),
            crate::plan::Access::ReadOnly,
            false,
        )
        .map_err(|e| SetupError::io(format!("hide the socket {}", path.join(name).display()), e))?;
        let at = path.join(name);
        if let Some((share, list)) = self
            .hidden
            .iter_mut()
            .rev()
            .find(|(share, _)| at.starts_with(share))
        {
            list.push(at.strip_prefix(&*share).unwrap_or(&at).to_owned());
        }
        Ok(())
    }

    /// Looks at whatever appeared in a watched folder since it was read, until nothing new
    /// comes (every share read first). Should the watches lose track (their queue overflowed),
    /// everything is looked through again, a few times at most.
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
            let events = match self.inotify.read_events() {
                Ok(events) => events,
                Err(Errno::EAGAIN) => return Ok(()),
                Err(_) => return Err(Drain::Lost),
            };
            // A folder renamed back and forth comes as many events: each name once.
            let mut names: HashSet<(WatchDescriptor, std::ffi::OsString)> = HashSet::new();
            for event in events {
                if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    return Err(Drain::Lost);
                }
                if let Some(name) = event.name {
                    names.insert((event.wd, name));
                }
            }
            for (wd, name) in names {
                let Some((dir, path)) = self.folders.get(&wd) else {
                    continue;
                };
                let (Ok(dir), path) = (dir.try_clone(), path.clone()) else {
                    return Err(Drain::Lost);
                };
                self.arrived(&dir, &name, &path).map_err(Drain::Failed)?;
            }
        }
    }

    /// Looks at `name`, which appeared in `dir`: a folder is read (unless it was), a socket
    /// hidden.
    fn arrived(&mut self, dir: &OwnedFd, name: &OsStr, path: &Path) -> Result<(), SetupError> {
        self.count(path)?;
        match self.open_folder(dir, name, path)? {
            Some((sub, at)) => self.folder(sub, at),
            None => self.hide(dir, name, path),
        }
    }

    /// Starts over with fresh watches: every share looked through again (sockets hidden
    /// already are empty files now).
    fn restart(&mut self) -> Result<(), SetupError> {
        self.inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| SetupError::new("watch shared folders for sockets (inotify)", e))?;
        self.folders.clear();
        self.read.clear();
        let shares: Vec<(PathBuf, OwnedFd)> = self
            .shares
            .iter()
            .filter_map(|(at, fd)| Some((at.clone(), fd.try_clone().ok()?)))
            .collect();
        for (at, root) in shares {
            self.folder(root, at)?;
        }
        Ok(())
    }

    /// What the launch is told: the sockets hidden in each share.
    pub fn notes(&self) -> Vec<String> {
        self.hidden
            .iter()
            .filter(|(_, list)| !list.is_empty())
            .map(|(share, list)| {
                let names: Vec<String> = list
                    .iter()
                    .take(3)
                    .map(|p| p.display().to_string())
                    .collect();
                format!(
                    "{} holds {} Unix socket{} ({}{}): hidden from the app, so nothing listening \
                     there can act for it (add `,sockets` to the share to keep them)",
                    share.display(),
                    list.len(),
                    if list.len() == 1 { "" } else { "s" },
                    names.join(", "),
                    if list.len() > 3 { ", …" } else { "" }
                )
            })
            .collect()
    }
}

/// Why following the watches stopped.
#[derive(Debug)]
enum Drain {
    /// Events were lost (the queue overflowed): look through everything again.
    Lost,
    Failed(SetupError),
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
