//! `imagekit`: OS image releases from the command line. Usage, configuration and exit statuses are
//! documented with its implementation, `imagekit::cli`.

fn main() -> std::process::ExitCode {
    imagekit::cli::main()
}
