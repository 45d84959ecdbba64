//! Parses Hadoop configuration files and prints their properties or the
//! error: `cargo run -p weir-conf --example check_conf_file -- FILE...`.

fn main() -> std::process::ExitCode {
    let mut status = std::process::ExitCode::SUCCESS;
    for arg in std::env::args_os().skip(1) {
        match weir_conf::parse_hadoop_file(std::path::Path::new(&arg)) {
            Ok(props) => {
                for p in props {
                    let fin = if p.is_final { " (final)" } else { "" };
                    println!("{}:{}: {} = {:?}{fin}", p.file.display(), p.line, p.name, p.value);
                }
            }
            Err(e) => {
                eprintln!("{e}");
                status = std::process::ExitCode::FAILURE;
            }
        }
    }
    status
}
