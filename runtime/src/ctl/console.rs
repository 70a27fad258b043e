//! The operator's terminal: output, warnings, and patronictl's prompts.
//! Generic over the streams so that tests can answer the prompts.

use std::io::{BufRead, Write};

use super::{fail, CtlError};

pub struct Console<'a> {
    input: &'a mut dyn BufRead,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
}

impl<'a> Console<'a> {
    pub fn new(input: &'a mut dyn BufRead, out: &'a mut dyn Write, err: &'a mut dyn Write) -> Console<'a> {
        Console { input, out, err }
    }

    /// Text for stdout, as it is.
    pub fn print(&mut self, text: &str) -> Result<(), CtlError> {
        self.out.write_all(text.as_bytes())?;
        self.out.flush()?;
        Ok(())
    }

    pub fn line(&mut self, text: &str) -> Result<(), CtlError> {
        self.print(&format!("{text}\n"))
    }

    /// A warning on stderr; a failed write is not worth failing for.
    pub fn warn(&mut self, text: &str) {
        let _ = writeln!(self.err, "keelctl: warning: {text}");
    }

    /// Asks `question`; an empty answer takes `default`. End of input (no
    /// terminal, nothing piped) is an error: nothing is done unasked.
    pub fn ask(&mut self, question: &str, default: Option<&str>) -> Result<String, CtlError> {
        let prompt = match default {
            Some(d) => format!("{question} [{d}]: "),
            None => format!("{question}: "),
        };
        self.print(&prompt)?;
        let mut answer = String::new();
        let read = self
            .input
            .read_line(&mut answer)
            .map_err(|e| CtlError(format!("cannot read the answer: {e}")))?;
        if read == 0 {
            self.print("\n")?;
            fail!("no answer (end of input): aborted, nothing changed");
        }
        let answer = answer.trim();
        Ok(if answer.is_empty() { default.unwrap_or("").to_owned() } else { answer.to_owned() })
    }

    /// All of the input (`--apply -`).
    pub fn read_all(&mut self) -> Result<String, CtlError> {
        let mut text = String::new();
        self.input.read_to_string(&mut text).map_err(|e| CtlError(format!("cannot read stdin: {e}")))?;
        Ok(text)
    }

    /// A yes/no question, no by default.
    pub fn confirm(&mut self, question: &str) -> Result<bool, CtlError> {
        let answer = self.ask(&format!("{question} [y/N]"), None)?;
        Ok(matches!(answer.to_ascii_lowercase().as_str(), "y" | "yes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_take_defaults_and_refuse_end_of_input() {
        let mut input: &[u8] = b"\ny\n";
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut console = Console::new(&mut input, &mut out, &mut err);
        assert_eq!(console.ask("Candidate ['pg2', 'pg3']", Some("")).unwrap(), "");
        assert!(console.confirm("Are you sure?").unwrap());
        let e = console.confirm("Again?").unwrap_err();
        assert_eq!(e.0, "no answer (end of input): aborted, nothing changed");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Candidate ['pg2', 'pg3'] []: Are you sure? [y/N]: Again? [y/N]: \n"
        );
    }
}
