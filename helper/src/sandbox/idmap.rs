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
