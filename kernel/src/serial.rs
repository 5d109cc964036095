//! The console: the serial port COM1 (`uart_16550`), or on a Jailhouse cell
//! whose communication region permits it the hypervisor's debug console
//! (one hypercall per byte); and the `log` backend on top of it.
//!
//! [`kprintln!`](crate::kprintln) prints unconditionally (results the host
//! judges, such as the PCI inventory); `log` macros print when their level is
//! enabled on the command line (`log=`). Each log line carries the time since
//! boot.

use abi::cmdline::LogLevel;
use abi::jailhouse::HypercallInstruction;
use core::fmt::{self, Write};
use spin::Mutex;
use uart_16550::Uart16550Tty;
use uart_16550::backend::PioBackend;

/// I/O port base of COM1.
const COM1: u16 = 0x3f8;

/// Where console output goes.
enum Console {
    /// COM1.
    Uart(Uart16550Tty<PioBackend>),
    /// Jailhouse's `DEBUG_CONSOLE_PUTC` hypercall.
    Hypervisor(HypercallInstruction),
}

impl Write for Console {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        match self {
            Console::Uart(port) => port.write_str(text),
            Console::Hypervisor(instruction) => {
                for byte in text.bytes() {
                    crate::jailhouse::debug_putc(*instruction, byte);
                }
                Ok(())
            }
        }
    }
}

static PORT: Mutex<Option<Console>> = Mutex::new(None);

/// Initialises COM1. Output before this call is dropped.
pub fn init() {
    // SAFETY: COM1's eight ports at 0x3f8 belong to this module alone; the
    // kernel touches them nowhere else.
    let port = unsafe { Uart16550Tty::new_port(COM1, uart_16550::Config::default()) };
    // Without a working UART there is nobody to tell; keep running silently.
    *PORT.lock() = port.ok().map(Console::Uart);
}

/// Sends the console to the hypervisor's debug console instead of COM1 (a
/// Jailhouse cell whose communication region permits it: a cell may not
/// own a UART).
pub fn init_hypervisor(instruction: HypercallInstruction) {
    *PORT.lock() = Some(Console::Hypervisor(instruction));
}

/// Writes formatted text to the console, with interrupts held off so that an
/// interrupt handler that prints cannot deadlock on the port lock.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        if let Some(port) = PORT.lock().as_mut() {
            let _ = port.write_fmt(args);
        }
    });
}

/// Takes the console away from whoever holds it, so that a fatal path
/// (panic, CPU exception, heap exhaustion) can print although the code it
/// interrupted held the lock.
///
/// # Safety
///
/// The caller must never return to the code it interrupted: that code may
/// hold the lock, and must not touch the port again once we write to it.
pub unsafe fn force_unlock() {
    if PORT.is_locked() {
        // SAFETY: the caller never returns to the lock holder (contract).
        unsafe { PORT.force_unlock() };
    }
}

/// Prints a line on the serial console, whatever the log level.
#[macro_export]
macro_rules! kprintln {
    () => { $crate::serial::write_fmt(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::serial::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

/// The `log` backend.
#[derive(Debug)]
struct SerialLogger;

impl log::Log for SerialLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let micros = crate::time::micros_since_boot();
            write_fmt(format_args!(
                "[{:4}.{:06}] {:5} {}\n",
                micros / 1_000_000,
                micros % 1_000_000,
                record.level(),
                record.args()
            ));
        }
    }

    fn flush(&self) {}
}

static LOGGER: SerialLogger = SerialLogger;

/// Installs the logger with the command line's maximum level.
pub fn init_logger(level: LogLevel) {
    // A second call fails harmlessly; the level is updated either way.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level_filter(level));
}

/// The `log` filter of a command-line level.
fn level_filter(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::Off => log::LevelFilter::Off,
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
    }
}
