//! Acting on detections through a board's pins: rules like "when `person`
//! is seen with score >= 0.6 for 2 frames in a row, drive pin 17 high for
//! 2 s, at most once every 10 s".
//!
//! Rules drive any [`embedded_hal::digital::OutputPin`]: a Linux GPIO line
//! (feature `gpio`, through `linux-embedded-hal`), a microcontroller's pin,
//! or [`LogPin`] for a dry run. Time is passed in, so behaviour is testable
//! and independent of the frame rate.

use std::path::Path;
use std::time::Duration;

use embedded_hal::digital::OutputPin;
use serde::Deserialize;

/// One rule, as written in an actions file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Class label that triggers the rule.
    pub label: String,
    /// Lowest score that counts.
    #[serde(default = "default_min_score")]
    pub min_score: f32,
    /// Output line (GPIO offset on the board's chip).
    pub pin: u32,
    /// How long the pin stays high after the last trigger, in milliseconds.
    #[serde(default = "default_hold_ms")]
    pub hold_ms: u64,
    /// Consecutive frames with a match needed before triggering (debounce).
    #[serde(default = "default_debounce")]
    pub debounce_frames: u32,
    /// Least time between two activations, in milliseconds (rate limit).
    #[serde(default)]
    pub min_interval_ms: u64,
}

fn default_min_score() -> f32 {
    0.5
}
fn default_hold_ms() -> u64 {
    1000
}
fn default_debounce() -> u32 {
    1
}

/// An actions file: `[[rule]]` tables.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ActionsFile {
    /// The rules.
    #[serde(rename = "rule", default)]
    pub rules: Vec<Rule>,
}

impl ActionsFile {
    /// Reads and checks an actions file.
    pub fn load(path: &Path) -> Result<ActionsFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read actions file {}: {e}", path.display()))?;
        let file: ActionsFile = toml::from_str(&text)
            .map_err(|e| format!("actions file {} is invalid: {e}", path.display()))?;
        for r in &file.rules {
            if r.debounce_frames == 0 {
                return Err(format!(
                    "rule for `{}`: debounce_frames must be at least 1",
                    r.label
                ));
            }
        }
        Ok(file)
    }
}

/// What a rule did on a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing changed.
    None,
    /// The pin went high.
    Activated,
    /// The pin was high and its hold was extended.
    Extended,
    /// The pin went low (hold elapsed).
    Released,
    /// A trigger was ignored: too soon after the last activation.
    RateLimited,
}

/// A rule bound to its pin, with its state.
pub struct Action<P: OutputPin> {
    rule: Rule,
    pin: P,
    streak: u32,
    active_until: Option<Duration>,
    last_activation: Option<Duration>,
}

impl<P: OutputPin> Action<P> {
    /// Binds `rule` to `pin`, driving it low first.
    pub fn new(rule: Rule, mut pin: P) -> Result<Action<P>, P::Error> {
        pin.set_low()?;
        Ok(Action {
            rule,
            pin,
            streak: 0,
            active_until: None,
            last_activation: None,
        })
    }

    /// The rule.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// Feeds one frame's detections (label and score) seen at time `now`.
    pub fn update<'a>(
        &mut self,
        detections: impl IntoIterator<Item = (&'a str, f32)>,
        now: Duration,
    ) -> Result<Event, P::Error> {
        let seen = detections
            .into_iter()
            .any(|(label, score)| label == self.rule.label && score >= self.rule.min_score);
        self.streak = if seen {
            self.streak.saturating_add(1)
        } else {
            0
        };
        let hold = Duration::from_millis(self.rule.hold_ms);
        let triggered = self.streak >= self.rule.debounce_frames;

        if let Some(until) = self.active_until {
            if triggered {
                self.active_until = Some(now + hold);
                return Ok(Event::Extended);
            }
            if now >= until {
                self.pin.set_low()?;
                self.active_until = None;
                return Ok(Event::Released);
            }
            return Ok(Event::None);
        }
        if !triggered {
            return Ok(Event::None);
        }
        let interval = Duration::from_millis(self.rule.min_interval_ms);
        if self
            .last_activation
            .is_some_and(|last| now < last + interval)
        {
            return Ok(Event::RateLimited);
        }
        self.pin.set_high()?;
        self.active_until = Some(now + hold);
        self.last_activation = Some(now);
        Ok(Event::Activated)
    }
}

/// Any action, whatever its pin type: what a program holding a mix of pins uses.
pub trait Act {
    /// The rule.
    fn rule(&self) -> &Rule;
    /// Feeds one frame, as [`Action::update`]; pin errors become text.
    fn feed(&mut self, detections: &[(&str, f32)], now: Duration) -> Result<Event, String>;
}

impl<P: OutputPin> Act for Action<P> {
    fn rule(&self) -> &Rule {
        &self.rule
    }
    fn feed(&mut self, detections: &[(&str, f32)], now: Duration) -> Result<Event, String> {
        self.update(detections.iter().copied(), now)
            .map_err(|e| format!("pin {}: {e:?}", self.rule.pin))
    }
}

/// Binds every rule of `file` to a pin made by `open` (a GPIO line, a log pin).
pub fn bind<P: OutputPin + 'static>(
    file: &ActionsFile,
    mut open: impl FnMut(u32) -> Result<P, String>,
) -> Result<Vec<Box<dyn Act>>, String> {
    file.rules
        .iter()
        .map(|rule| {
            let pin = open(rule.pin)?;
            let action =
                Action::new(rule.clone(), pin).map_err(|e| format!("pin {}: {e:?}", rule.pin))?;
            Ok(Box::new(action) as Box<dyn Act>)
        })
        .collect()
}

/// A pin that only reports its transitions on stderr: a dry run of the rules
/// on a machine without GPIO.
#[derive(Debug)]
pub struct LogPin {
    /// The line it stands for.
    pub line: u32,
}

impl embedded_hal::digital::ErrorType for LogPin {
    type Error = std::convert::Infallible;
}

impl OutputPin for LogPin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        eprintln!("gpio {}: low", self.line);
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        eprintln!("gpio {}: high", self.line);
        Ok(())
    }
}

/// Opens GPIO line `line` of `chip` (e.g. `/dev/gpiochip0`) as an output.
#[cfg(feature = "gpio")]
pub fn gpio_pin(chip: &Path, line: u32) -> Result<linux_embedded_hal::CdevPin, String> {
    use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
    let mut chip = Chip::new(chip).map_err(|e| format!("cannot open {}: {e}", chip.display()))?;
    let handle = chip
        .get_line(line)
        .and_then(|l| l.request(LineRequestFlags::OUTPUT, 0, "edgewise"))
        .map_err(|e| format!("cannot claim GPIO line {line}: {e}"))?;
    linux_embedded_hal::CdevPin::new(handle).map_err(|e| format!("GPIO line {line}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::digital::{Mock, State, Transaction};

    fn rule() -> Rule {
        Rule {
            label: "person".into(),
            min_score: 0.6,
            pin: 17,
            hold_ms: 2000,
            debounce_frames: 2,
            min_interval_ms: 10_000,
        }
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn debounce_hold_and_release() {
        let pin = Mock::new(&[
            Transaction::set(State::Low),  // on creation
            Transaction::set(State::High), // second consecutive frame
            Transaction::set(State::Low),  // hold elapsed
        ]);
        let mut action = Action::new(rule(), pin).unwrap();
        let person = [("person", 0.9)];
        assert_eq!(
            action.update(person, ms(0)).unwrap(),
            Event::None,
            "one frame is not enough"
        );
        assert_eq!(
            action.update([("person", 0.5)], ms(100)).unwrap(),
            Event::None,
            "below min_score resets"
        );
        assert_eq!(action.update(person, ms(200)).unwrap(), Event::None);
        assert_eq!(action.update(person, ms(300)).unwrap(), Event::Activated);
        assert_eq!(
            action.update([("car", 0.99)], ms(1000)).unwrap(),
            Event::None,
            "still held"
        );
        assert_eq!(action.update([], ms(2300)).unwrap(), Event::Released);
        action.pin.done();
    }

    #[test]
    fn seeing_it_again_extends_the_hold_and_the_rate_limit_holds_back_new_activations() {
        let pin = Mock::new(&[
            Transaction::set(State::Low),
            Transaction::set(State::High),
            Transaction::set(State::Low),
            Transaction::set(State::High),
        ]);
        let mut action = Action::new(
            Rule {
                debounce_frames: 1,
                ..rule()
            },
            pin,
        )
        .unwrap();
        let person = [("person", 0.9)];
        assert_eq!(action.update(person, ms(0)).unwrap(), Event::Activated);
        assert_eq!(action.update(person, ms(1500)).unwrap(), Event::Extended);
        assert_eq!(
            action.update([], ms(3000)).unwrap(),
            Event::None,
            "extended to 3500"
        );
        assert_eq!(action.update([], ms(3500)).unwrap(), Event::Released);
        assert_eq!(
            action.update(person, ms(5000)).unwrap(),
            Event::RateLimited,
            "within 10 s of the activation"
        );
        assert_eq!(action.update(person, ms(10_000)).unwrap(), Event::Activated);
        action.pin.done();
    }

    #[test]
    fn actions_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(
            &path,
            "[[rule]]\nlabel = \"person\"\npin = 17\nmin_score = 0.6\n",
        )
        .unwrap();
        let file = ActionsFile::load(&path).unwrap();
        assert_eq!(file.rules[0].hold_ms, 1000);
        std::fs::write(
            &path,
            "[[rule]]\nlabel = \"person\"\npin = 17\nholdms = 5\n",
        )
        .unwrap();
        assert!(ActionsFile::load(&path).unwrap_err().contains("holdms"));
        std::fs::write(
            &path,
            "[[rule]]\nlabel = \"person\"\npin = 17\ndebounce_frames = 0\n",
        )
        .unwrap();
        assert!(ActionsFile::load(&path).unwrap_err().contains("at least 1"));
    }
}
