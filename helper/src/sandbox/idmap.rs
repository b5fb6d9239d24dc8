//! Writes the uid/gid maps of a child's user namespace, from outside it.

use std::process::Command;

use hutch_core::protocol::IdMapKind;
use nix::unistd::Pid;

use super::SetupError;
use crate::plan::IdMapPlan;
use crate::plan::idmap::{MapLine, tool_args};

/// Starts a map tool; its output is collected by [`finish_tool`].
fn start_tool(
    tool: &std::path::Path,
    pid: Pid,
    lines: &[MapLine],
) -> Result<(String, std::process::Child), SetupError> {
    let args = tool_args(lines);
    let what = format!("{} {pid} {}", tool.display(), args.join(" "));
    let child = Command::new(tool)
        .arg(pid.to_string())
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| SetupError::new(what.clone(), format!("cannot run it: {e}")))?;
    Ok((what, child))
}

fn finish_tool((what, child): (String, std::process::Child)) -> Result<(), SetupError> {
    let out = child
        .wait_with_output()
        .map_err(|e| SetupError::new(what.clone(), format!("cannot wait for it: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(SetupError::new(
            what,
            format!("failed ({}): {stderr}", out.status),
        ));
    }
    Ok(())
}

fn write_proc(pid: Pid, file: &str, contents: &str) -> Result<(), SetupError> {
    let path = format!("/proc/{pid}/{file}");
    std::fs::write(&path, contents)
        .map_err(|e| SetupError::new(format!("write {contents:?} to {path}"), e))
}

fn format_lines(lines: &[MapLine]) -> String {
    lines
        .iter()
        .map(|l| format!("{} {} {}\n", l.inside, l.outside, l.count))
        .collect()
}

/// Writes the maps of `pid`'s user namespace as the plan says.
pub fn write(pid: Pid, plan: &IdMapPlan) -> Result<(), SetupError> {
    match plan.kind {
        IdMapKind::SubordinateRange => {
            let (Some(uidmap), Some(gidmap)) = (&plan.newuidmap, &plan.newgidmap) else {
                return Err(SetupError::new(
                    "write id maps",
                    "newuidmap/newgidmap missing",
                ));
            };
            // The two tools are independent: run them side by side (each costs a setuid exec).
            let uid_tool = start_tool(uidmap, pid, &plan.uid_lines)?;
            let gid_tool = start_tool(gidmap, pid, &plan.gid_lines);
            let uid_result = finish_tool(uid_tool);
            let gid_result = gid_tool.and_then(finish_tool);
            uid_result.and(gid_result)
        }
        IdMapKind::SingleId => {
            // An unprivileged writer may map only its own ids, and only once setgroups is off.
            write_proc(pid, "setgroups", "deny")?;
            write_proc(pid, "uid_map", &format_lines(&plan.uid_lines))?;
            write_proc(pid, "gid_map", &format_lines(&plan.gid_lines))
        }
    }
}

#[cfg(test)]
mod tests {
    //! The map tools are stand-ins here (shell scripts that record their arguments): the real
    //! `newuidmap` needs a child in a new user namespace, which `tests/tests/helper.rs` gives it.
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use super::*;

    fn line(inside: u32, outside: u32, count: u32) -> MapLine {
        MapLine {
            inside,
            outside,
            count,
        }
    }

    /// A folder of its own for each test, removed at the end.
    struct Folder(PathBuf);

    impl Folder {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("hutch-idmap-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        /// A tool that writes its arguments to `NAME.args`, then says `stderr` and exits `code`.
        fn tool(&self, name: &str, stderr: &str, code: i32) -> PathBuf {
            let path = self.0.join(name);
            let log = self.0.join(format!("{name}.args"));
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\necho \"$@\" > '{}'\necho '{stderr}' >&2\nexit {code}\n",
                    log.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        }

        fn args(&self, name: &str) -> String {
            std::fs::read_to_string(self.0.join(format!("{name}.args"))).unwrap_or_default()
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn plan(uidmap: Option<&Path>, gidmap: Option<&Path>) -> IdMapPlan {
        IdMapPlan {
            kind: IdMapKind::SubordinateRange,
            uid_lines: vec![line(0, 1000, 1), line(1, 100_000, 65_536)],
            gid_lines: vec![line(0, 1000, 1), line(1, 200_000, 65_536)],
            newuidmap: uidmap.map(Path::to_owned),
            newgidmap: gidmap.map(Path::to_owned),
        }
    }

    #[test]
    fn a_written_map_has_a_line_per_range() {
        assert_eq!(
            format_lines(&[line(0, 1000, 1), line(1, 100_000, 65_536)]),
            "0 1000 1\n1 100000 65536\n"
        );
    }

    #[test]
    fn both_tools_get_the_pid_and_their_own_ranges() {
        let dir = Folder::new("ranges");
        let (uid, gid) = (dir.tool("uid", "", 0), dir.tool("gid", "", 0));
        write(Pid::from_raw(4242), &plan(Some(&uid), Some(&gid))).unwrap();
        assert_eq!(dir.args("uid"), "4242 0 1000 1 1 100000 65536\n");
        assert_eq!(dir.args("gid"), "4242 0 1000 1 1 200000 65536\n");
    }

    #[test]
    fn a_failing_tool_is_named_with_what_it_said_and_the_other_still_runs() {
        let dir = Folder::new("fails");
        let uid = dir.tool("uid", "uid range not allowed", 1);
        let gid = dir.tool("gid", "", 0);
        let err = write(Pid::from_raw(7), &plan(Some(&uid), Some(&gid))).unwrap_err();
        assert_eq!(
            err.what,
            format!("{} 7 0 1000 1 1 100000 65536", uid.display())
        );
        assert!(err.reason.starts_with("failed (exit status: 1)"), "{err}");
        assert!(err.reason.ends_with("uid range not allowed"), "{err}");
        assert_eq!(dir.args("gid"), "7 0 1000 1 1 200000 65536\n");
    }

    #[test]
    fn a_missing_tool_refuses_before_running_anything() {
        let dir = Folder::new("missing");
        let uid = dir.tool("uid", "", 0);
        let err = write(Pid::from_raw(7), &plan(Some(&uid), None)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "write id maps: newuidmap/newgidmap missing"
        );
        assert_eq!(dir.args("uid"), "", "nothing ran");
        let absent = dir.0.join("absent");
        let err = write(Pid::from_raw(7), &plan(Some(&absent), Some(&uid))).unwrap_err();
        assert!(err.reason.starts_with("cannot run it:"), "{err}");
    }
}
