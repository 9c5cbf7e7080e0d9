//! Fuzz target: arbitrary bytes as a SystemTap script through the parser, the printer,
//! alias expansion and the runtime's elaboration, none of which may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use script_syntax::SourceMap;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut sm = SourceMap::default();
    let f = sm.add("<fuzz>", text.into_owned());
    let (script, diags) = script_syntax::parse(&sm, f, &["a1".to_string(), "2".to_string()]);
    // Rendering exercises every span: a span past the end of the text would panic here.
    let _ = script_syntax::render_all(&diags, &sm);
    let _ = script_syntax::print_script(&script);
    if diags.is_empty() {
        let (script, more) = script_syntax::expand_script(&script);
        let _ = script_syntax::render_all(&more, &sm);
        let opts = runtime::RuntimeOptions {
            defines: vec![("MAXACTION".into(), "50".into())],
            ..Default::default()
        };
        if let Ok(mut rt) =
            runtime::Runtime::new(&script, &sm, Vec::new(), opts, Box::new(std::io::sink()))
        {
            rt.set_stderr(Box::new(std::io::sink()));
            for i in 0..rt.probe_count() as u32 {
                rt.run_probe(i);
            }
            rt.finish();
        }
    }
});
