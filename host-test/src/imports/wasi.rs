//! `wasi_snapshot_preview1`, served the way proxy-wasm-cpp-host (and so Envoy) serves it: no
//! files, no arguments, no environment; stdout and stderr become log lines.
//!
//! A `wasm32-wasip1` Rust cdylib built on the SDK imports `fd_write`, `environ_get`,
//! `environ_sizes_get`, `proc_exit`, and, when std's `HashMap` or clocks are used, `random_get`
//! and `clock_time_get`. Any other WASI function it imports answers `ENOSYS`.

use anyhow::Result;
use wasmtime::{Caller, ExternType, Linker, Module, Val, ValType};

use super::guest::{read, split, write, write_u32, write_u64};
use crate::abi::errno;
use crate::outcome::LogLevel;
use crate::state::State;

const WASI: &str = "wasi_snapshot_preview1";

type Ret = wasmtime::Result<u32>;

const FAULT: Ret = Ok(errno::FAULT);

/// The functions served below; everything else the module imports from WASI answers ENOSYS.
const SERVED: &[&str] = &[
    "fd_write",
    "fd_read",
    "fd_close",
    "fd_seek",
    "fd_fdstat_get",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "environ_get",
    "environ_sizes_get",
    "args_get",
    "args_sizes_get",
    "clock_time_get",
    "clock_res_get",
    "random_get",
    "proc_exit",
    "sched_yield",
];

pub(super) fn define(linker: &mut Linker<State>, module: &Module) -> Result<()> {
    linker.func_wrap(WASI, "fd_write", fd_write)?;
    linker.func_wrap(
        WASI,
        "fd_read",
        |_: Caller<'_, State>, _: u32, _: u32, _: u32, _: u32| -> Ret { Ok(errno::NOSYS) },
    )?;
    // cpp-host answers success for close and seek without doing anything.
    linker.func_wrap(WASI, "fd_close", |_: Caller<'_, State>, _: u32| -> Ret {
        Ok(errno::SUCCESS)
    })?;
    linker.func_wrap(
        WASI,
        "fd_seek",
        |_: Caller<'_, State>, _: u32, _: i64, _: u32, _: u32| -> Ret { Ok(errno::SUCCESS) },
    )?;
    linker.func_wrap(WASI, "fd_fdstat_get", fd_fdstat_get)?;
    // No preopened directories: wasi-libc stops scanning at the first EBADF.
    linker.func_wrap(
        WASI,
        "fd_prestat_get",
        |_: Caller<'_, State>, _: u32, _: u32| -> Ret { Ok(errno::BADF) },
    )?;
    linker.func_wrap(
        WASI,
        "fd_prestat_dir_name",
        |_: Caller<'_, State>, _: u32, _: u32, _: u32| -> Ret { Ok(errno::BADF) },
    )?;
    linker.func_wrap(
        WASI,
        "environ_get",
        |_: Caller<'_, State>, _: u32, _: u32| -> Ret { Ok(errno::SUCCESS) },
    )?;
    linker.func_wrap(WASI, "environ_sizes_get", two_zeros)?;
    linker.func_wrap(
        WASI,
        "args_get",
        |_: Caller<'_, State>, _: u32, _: u32| -> Ret { Ok(errno::SUCCESS) },
    )?;
    linker.func_wrap(WASI, "args_sizes_get", two_zeros)?;
    linker.func_wrap(WASI, "clock_time_get", clock_time_get)?;
    linker.func_wrap(WASI, "clock_res_get", clock_res_get)?;
    linker.func_wrap(WASI, "random_get", random_get)?;
    linker.func_wrap(WASI, "proc_exit", proc_exit)?;
    linker.func_wrap(WASI, "sched_yield", |_: Caller<'_, State>| -> Ret {
        Ok(errno::SUCCESS)
    })?;

    for import in module.imports() {
        if import.module() != WASI || SERVED.contains(&import.name()) {
            continue;
        }
        if let ExternType::Func(ty) = import.ty() {
            let name = import.name().to_string();
            let answers_errno =
                ty.results().len() == 1 && matches!(ty.results().next(), Some(ValType::I32));
            linker.func_new(
                WASI,
                import.name(),
                ty.clone(),
                move |_, _, results: &mut [Val]| {
                    if !answers_errno {
                        wasmtime::bail!("the host does not provide WASI `{name}`");
                    }
                    for result in results.iter_mut() {
                        *result = Val::I32(errno::NOSYS as i32);
                    }
                    Ok(())
                },
            )?;
        }
    }
    Ok(())
}

/// One log line per write, stdout at info and stderr at error, one trailing newline removed:
/// cpp-host's `writevImpl`.
fn fd_write(
    mut caller: Caller<'_, State>,
    fd: u32,
    iovs: u32,
    iovs_len: u32,
    nwritten: u32,
) -> Ret {
    let level = match fd {
        1 => LogLevel::Info,
        2 => LogLevel::Error,
        _ => return Ok(errno::BADF),
    };
    let Some((mem, state)) = split(&mut caller) else {
        return FAULT;
    };
    let mut line = std::mem::take(&mut state.scratch);
    line.clear();
    let mut faulted = false;
    for i in 0..iovs_len {
        let entry = i.checked_mul(8).and_then(|o| iovs.checked_add(o));
        let iov = entry.and_then(|at| read(mem, at, 8));
        let Some((buf, len)) = iov.and_then(|b| Some((le_u32(b.get(..4)?)?, le_u32(b.get(4..)?)?)))
        else {
            faulted = true;
            break;
        };
        match read(mem, buf, len) {
            Some(bytes) => line.extend_from_slice(bytes),
            None => {
                faulted = true;
                break;
            }
        }
    }
    let written = line.len();
    if !faulted && written > 0 {
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        state.log(level, text);
    }
    state.scratch = line;
    if faulted || !write_u32(mem, nwritten, u32::try_from(written).unwrap_or(u32::MAX)) {
        return FAULT;
    }
    Ok(errno::SUCCESS)
}

fn le_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// stdout and stderr are write-only character streams; nothing else is open.
fn fd_fdstat_get(mut caller: Caller<'_, State>, fd: u32, stat: u32) -> Ret {
    if fd != 1 && fd != 2 {
        return Ok(errno::BADF);
    }
    let Some((mem, _)) = split(&mut caller) else {
        return FAULT;
    };
    // filetype, flags, padding (8 bytes), rights_base = FD_WRITE (64), rights_inheriting = 0.
    let mut fdstat = [0u8; 24];
    if let Some(rights) = fdstat.get_mut(8..16) {
        rights.copy_from_slice(&64u64.to_le_bytes());
    }
    if !write(mem, stat, &fdstat) {
        return FAULT;
    }
    Ok(errno::SUCCESS)
}

/// Empty environment and argument lists.
fn two_zeros(mut caller: Caller<'_, State>, count: u32, size: u32) -> Ret {
    let Some((mem, _)) = split(&mut caller) else {
        return FAULT;
    };
    if !(write_u32(mem, count, 0) && write_u32(mem, size, 0)) {
        return FAULT;
    }
    Ok(errno::SUCCESS)
}

/// Realtime (0) and monotonic (1) both read the plugin's clock, so a fixed clock fixes both.
fn clock_time_get(mut caller: Caller<'_, State>, id: u32, _precision: u64, ret: u32) -> Ret {
    if id > 1 {
        return Ok(errno::NOTSUP);
    }
    let Some((mem, state)) = split(&mut caller) else {
        return FAULT;
    };
    if !write_u64(mem, ret, state.clock.now_nanos()) {
        return FAULT;
    }
    Ok(errno::SUCCESS)
}

fn clock_res_get(mut caller: Caller<'_, State>, id: u32, ret: u32) -> Ret {
    if id > 1 {
        return Ok(errno::NOTSUP);
    }
    let Some((mem, _)) = split(&mut caller) else {
        return FAULT;
    };
    if !write_u64(mem, ret, 1) {
        return FAULT;
    }
    Ok(errno::SUCCESS)
}

fn random_get(mut caller: Caller<'_, State>, buf: u32, len: u32) -> Ret {
    let Some((mem, state)) = split(&mut caller) else {
        return FAULT;
    };
    let Some(dst) = (buf as usize)
        .checked_add(len as usize)
        .and_then(|end| mem.get_mut(buf as usize..end))
    else {
        return FAULT;
    };
    state.fill_random(dst);
    Ok(errno::SUCCESS)
}

/// A module that exits has nothing left to run: the call traps.
fn proc_exit(_caller: Caller<'_, State>, code: u32) -> wasmtime::Result<()> {
    wasmtime::bail!("the module called WASI proc_exit({code})")
}
