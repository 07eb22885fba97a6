//! node_exporter's hardware collectors, on by default there: `hwmon` (sensors, fans, PWM),
//! `thermal_zone` (zones and cooling devices), `powersupplyclass`, `cpufreq`, and `schedstat`.
//! Each reads a sysfs (or procfs) tree given as a path, so tests run them on node_exporter's
//! own fixture tree and compare with its expected output. Names, labels, units and the chip
//! naming rules follow node_exporter's `collector/{hwmon,thermal_zone,powersupplyclass,
//! cpufreq,schedstat}_linux.go` (a7dcc3a). What a host lacks (a VM has no sensors) is absent.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One metric family: type, help and samples (labels in order, value).
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub kind: &'static str,
    pub help: String,
    pub samples: Vec<(Vec<(String, String)>, f64)>,
}

/// Families by name (the text format wants each family's samples together).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Families(pub BTreeMap<String, Family>);

impl Families {
    fn add(&mut self, name: &str, kind: &'static str, help: &str, labels: &[(&str, &str)], v: f64) {
        let f = self.0.entry(name.to_string()).or_insert_with(|| Family {
            kind,
            help: help.to_string(),
            samples: Vec::new(),
        });
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // One series per label set, as the client library insists.
        if !f.samples.iter().any(|(l, _)| *l == labels) {
            f.samples.push((labels, v));
        }
    }
}

/// At most 4 KiB of a sysfs attribute (node_exporter reads 128 bytes for hwmon), newline
/// trimmed; None when it cannot be read (write-only attributes, absent devices).
fn attr(p: &Path) -> Option<String> {
    let mut buf = Vec::with_capacity(128);
    std::fs::File::open(p)
        .ok()?
        .take(4096)
        .read_to_end(&mut buf)
        .ok()?;
    Some(String::from_utf8_lossy(&buf).trim_matches('\n').to_string())
}

fn int(p: &Path) -> Option<i64> {
    attr(p)?.trim().parse().ok()
}

/// Directory entries' names, sorted (a missing directory is empty).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Reads every collector; `sys` is normally `/sys` and `proc` `/proc`.
pub fn read(sys: &Path, proc: &Path) -> Families {
    let mut f = Families::default();
    hwmon(&sys.join("class/hwmon"), &mut f);
    thermal(&sys.join("class/thermal"), &mut f);
    power_supply(&sys.join("class/power_supply"), &mut f);
    cpufreq(&sys.join("devices/system/cpu"), &mut f);
    if let Some(t) = attr(&proc.join("schedstat")) {
        schedstat(&t, &mut f);
    }
    f
}

/// node_exporter's `cleanMetricName`: lower case, `[^a-z0-9:_]` to `_`, `_` trimmed.
fn clean(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == ':' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_matches('_')
        .to_string()
}

/// `^(?P<type>[^0-9]+)(?P<id>[0-9]*)?(_(?P<property>.+))?$`: (type, number, property).
fn explode(file: &str) -> Option<(&str, u64, &str)> {
    let t_end = file
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(file.len());
    if t_end == 0 {
        return None;
    }
    let (kind, rest) = file.split_at(t_end);
    let d_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (digits, rest) = rest.split_at(d_end);
    let num = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let prop = match rest {
        "" => "",
        r => r.strip_prefix('_').filter(|p| !p.is_empty())?,
    };
    Some((kind, num, prop))
}

const HWMON_TYPES: [&str; 14] = [
    "vrm",
    "beep_enable",
    "update_interval",
    "in",
    "cpu",
    "fan",
    "pwm",
    "temp",
    "curr",
    "power",
    "energy",
    "humidity",
    "intrusion",
    "freq",
];

/// sensor ("temp1") -> property ("input", "" for the bare file) -> value.
type Sensors = BTreeMap<String, BTreeMap<String, String>>;

fn sensor_files(dir: &Path, into: &mut Sensors) {
    for name in names(dir) {
        let Some((kind, num, prop)) = explode(&name) else {
            continue;
        };
        if !HWMON_TYPES.contains(&kind) {
            continue;
        }
        if let Some(v) = attr(&dir.join(&name)) {
            into.entry(format!("{kind}{num}"))
                .or_default()
                .insert(prop.to_string(), v);
        }
    }
}

/// node_exporter's `hwmonName`: the device's parent and name (`platform_coretemp_0`), else
/// the `name` file, else the directory's own name.
fn hwmon_base_name(dir: &Path) -> Option<String> {
    if let Ok(dev) = std::fs::canonicalize(dir.join("device")) {
        let name = clean(&dev.file_name()?.to_string_lossy());
        let kind = dev
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| clean(&n.to_string_lossy()))
            .unwrap_or_default();
        if !kind.is_empty() && !name.is_empty() {
            return Some(format!("{kind}_{name}"));
        }
        if !name.is_empty() {
            return Some(name);
        }
    }
    if let Some(n) = attr(&dir.join("name")).map(|n| clean(&n))
        && !n.is_empty()
    {
        return Some(n);
    }
    let real = std::fs::canonicalize(dir).ok()?;
    Some(clean(&real.file_name()?.to_string_lossy())).filter(|n| !n.is_empty())
}

fn hwmon(class: &Path, f: &mut Families) {
    // Pass 1: names, and how often each occurs (two hwmon nodes of one device share it).
    let mut entries: Vec<(PathBuf, String, String)> = Vec::new();
    for n in names(class) {
        let dir = class.join(&n);
        if !dir.is_dir() {
            continue;
        }
        let Some(base) = hwmon_base_name(&dir) else {
            continue;
        };
        let name_file = attr(&dir.join("name"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        entries.push((dir, base, name_file));
    }
    for (dir, base, name_file) in &entries {
        let chip = if entries.iter().filter(|e| e.1 == *base).count() > 1 {
            let same_name = entries
                .iter()
                .filter(|e| e.1 == *base && e.2 == *name_file)
                .count();
            let mut suffix = clean(name_file);
            if suffix.is_empty() || same_name > 1 {
                suffix = clean(&dir.file_name().unwrap_or_default().to_string_lossy());
            }
            format!("{base}_{suffix}")
        } else {
            base.clone()
        };
        hwmon_chip(dir, &chip, f);
    }
}

fn hwmon_chip(dir: &Path, chip: &str, f: &mut Families) {
    let mut data = Sensors::new();
    sensor_files(dir, &mut data);
    if dir.join("device").exists() {
        sensor_files(&dir.join("device"), &mut data);
    }
    if let Some(n) = attr(&dir.join("name")).map(|n| clean(&n))
        && !n.is_empty()
    {
        f.add(
            "node_hwmon_chip_names",
            "gauge",
            "Annotation metric for human-readable chip names",
            &[("chip", chip), ("chip_name", &n)],
            1.0,
        );
    }
    for (sensor, props) in &data {
        let Some((kind, _, _)) = explode(sensor) else {
            continue;
        };
        let labels = [("chip", chip), ("sensor", sensor.as_str())];
        if let Some(label) = props.get("label") {
            f.add(
                "node_hwmon_sensor_label",
                "gauge",
                "Label for given chip and sensor",
                &[("chip", chip), ("sensor", sensor), ("label", label)],
                1.0,
            );
        }
        let bare = props.get("").map(String::as_str);
        match kind {
            "beep_enable" => {
                let v = if bare == Some("1") { 1.0 } else { 0.0 };
                f.add(
                    "node_hwmon_beep_enabled",
                    "gauge",
                    "Hardware beep enabled",
                    &labels,
                    v,
                );
                continue;
            }
            "vrm" => {
                if let Some(v) = bare.and_then(|b| b.parse::<f64>().ok()) {
                    f.add(
                        "node_hwmon_voltage_regulator_version",
                        "gauge",
                        "Hardware voltage regulator",
                        &labels,
                        v,
                    );
                }
                continue;
            }
            "update_interval" => {
                if let Some(v) = bare.and_then(|b| b.parse::<f64>().ok()) {
                    f.add(
                        "node_hwmon_update_interval_seconds",
                        "gauge",
                        "Hardware monitor update interval",
                        &labels,
                        v * 0.001,
                    );
                }
                continue;
            }
            _ => {}
        }
        for (element, value) in props {
            if element == "label" {
                continue;
            }
            let mut name = format!("node_hwmon_{kind}");
            if element == "input" {
                if bare.is_some() {
                    name.push_str("_input");
                }
            } else if !element.is_empty() {
                name = format!("{name}_{}", clean(element));
            }
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            let el = element.as_str();
            let (name, help, v) = match (kind, el) {
                (_, "fault" | "alarm") => {
                    (name, format!("Hardware sensor {el} status ({kind})"), v)
                }
                (_, "beep") => (
                    format!("{name}_enabled"),
                    "Hardware monitor sensor has beeping enabled".into(),
                    v,
                ),
                ("in" | "cpu", _) => (
                    format!("{name}_volts"),
                    format!("Hardware monitor for voltage ({el})"),
                    v * 0.001,
                ),
                ("temp", e) if e != "type" => (
                    format!("{name}_celsius"),
                    format!(
                        "Hardware monitor for temperature ({})",
                        if e.is_empty() { "input" } else { e }
                    ),
                    v * 0.001,
                ),
                ("curr", _) => (
                    format!("{name}_amps"),
                    format!("Hardware monitor for current ({el})"),
                    v * 0.001,
                ),
                ("energy", _) => (
                    format!("{name}_joule_total"),
                    format!("Hardware monitor for joules used so far ({el})"),
                    v / 1e6,
                ),
                ("power", "accuracy") => (
                    name,
                    "Hardware monitor power meter accuracy, as a ratio".into(),
                    v / 1e6,
                ),
                ("power", "average_interval" | "average_interval_min" | "average_interval_max") => {
                    (
                        format!("{name}_seconds"),
                        format!("Hardware monitor power usage update interval ({el})"),
                        v * 0.001,
                    )
                }
                ("power", _) => (
                    format!("{name}_watt"),
                    format!("Hardware monitor for power usage in watts ({el})"),
                    v / 1e6,
                ),
                ("humidity", _) => (
                    name,
                    format!(
                        "Hardware monitor for humidity, as a ratio (multiply with 100.0 to get the humidity as a percentage) ({el})"
                    ),
                    v / 1e6,
                ),
                ("fan", "input" | "min" | "max" | "target") => (
                    format!("{name}_rpm"),
                    format!("Hardware monitor for fan revolutions per minute ({el})"),
                    v,
                ),
                ("freq", "input") => {
                    // Named by its label (`sclk`), in MHz; without a label it is left out.
                    if let Some(label) = props.get("label") {
                        f.add(
                            &format!("{name}_freq_mhz"),
                            "gauge",
                            "Hardware monitor for GPU frequency in MHz",
                            &[("chip", chip), ("sensor", &clean(label))],
                            v / 1e6,
                        );
                    }
                    continue;
                }
                _ => (name, format!("Hardware monitor {kind} element {el}"), v),
            };
            f.add(&name, "gauge", &help, &labels, v);
        }
    }
}

fn thermal(class: &Path, f: &mut Families) {
    for n in names(class) {
        let dir = class.join(&n);
        if let Some(zone) = n.strip_prefix("thermal_zone") {
            let (Some(kind), Some(temp)) = (attr(&dir.join("type")), int(&dir.join("temp"))) else {
                continue;
            };
            f.add(
                "node_thermal_zone_temp",
                "gauge",
                "Zone temperature in Celsius",
                &[("zone", zone), ("type", kind.trim())],
                temp as f64 / 1000.0,
            );
        } else if let Some(dev) = n.strip_prefix("cooling_device") {
            let (Some(kind), Some(cur), Some(max)) = (
                attr(&dir.join("type")),
                int(&dir.join("cur_state")),
                int(&dir.join("max_state")),
            ) else {
                continue;
            };
            let labels = [("name", dev), ("type", kind.trim())];
            f.add(
                "node_cooling_device_cur_state",
                "gauge",
                "Current throttle state of the cooling device",
                &labels,
                cur as f64,
            );
            f.add(
                "node_cooling_device_max_state",
                "gauge",
                "Maximum throttle state of the cooling device",
                &labels,
                max as f64,
            );
        }
    }
}

/// (metric suffix, attribute file, divisor) of powersupplyclass's numeric figures.
const SUPPLY_NUMBERS: [(&str, &str, f64); 49] = [
    ("authentic", "authentic", 1.0),
    ("calibrate", "calibrate", 1.0),
    ("capacity", "capacity", 1.0),
    ("capacity_alert_max", "capacity_alert_max", 1.0),
    ("capacity_alert_min", "capacity_alert_min", 1.0),
    ("cyclecount", "cycle_count", 1.0),
    ("online", "online", 1.0),
    ("present", "present", 1.0),
    ("time_to_empty_seconds", "time_to_empty_now", 1.0),
    ("time_to_full_seconds", "time_to_full_now", 1.0),
    ("current_boot", "current_boot", 1e6),
    ("current_max", "current_max", 1e6),
    ("current_ampere", "current_now", 1e6),
    ("energy_empty", "energy_empty", 1e6),
    ("energy_empty_design", "energy_empty_design", 1e6),
    ("energy_full", "energy_full", 1e6),
    ("energy_full_design", "energy_full_design", 1e6),
    ("energy_watthour", "energy_now", 1e6),
    ("voltage_boot", "voltage_boot", 1e6),
    ("voltage_max", "voltage_max", 1e6),
    ("voltage_max_design", "voltage_max_design", 1e6),
    ("voltage_min", "voltage_min", 1e6),
    ("voltage_min_design", "voltage_min_design", 1e6),
    ("voltage_volt", "voltage_now", 1e6),
    ("voltage_ocv", "voltage_ocv", 1e6),
    ("charge_control_limit", "charge_control_limit", 1e6),
    ("charge_control_limit_max", "charge_control_limit_max", 1e6),
    ("charge_counter", "charge_counter", 1e6),
    ("charge_empty", "charge_empty", 1e6),
    ("charge_empty_design", "charge_empty_design", 1e6),
    ("charge_full", "charge_full", 1e6),
    ("charge_full_design", "charge_full_design", 1e6),
    ("charge_ampere", "charge_now", 1e6),
    ("charge_term_current", "charge_term_current", 1e6),
    ("constant_charge_current", "constant_charge_current", 1e6),
    (
        "constant_charge_current_max",
        "constant_charge_current_max",
        1e6,
    ),
    ("constant_charge_voltage", "constant_charge_voltage", 1e6),
    (
        "constant_charge_voltage_max",
        "constant_charge_voltage_max",
        1e6,
    ),
    ("precharge_current", "precharge_current", 1e6),
    ("input_current_limit", "input_current_limit", 1e6),
    ("power_watt", "power_now", 1e6),
    ("temp_celsius", "temp", 10.0),
    ("temp_alert_max_celsius", "temp_alert_max", 10.0),
    ("temp_alert_min_celsius", "temp_alert_min", 10.0),
    ("temp_ambient_celsius", "temp_ambient", 10.0),
    ("temp_ambient_max_celsius", "temp_ambient_max", 10.0),
    ("temp_ambient_min_celsius", "temp_ambient_min", 10.0),
    ("temp_max_celsius", "temp_max", 10.0),
    ("temp_min_celsius", "temp_min", 10.0),
];

/// The text attributes that label `node_power_supply_info`, in label order.
const SUPPLY_TEXTS: [&str; 11] = [
    "capacity_level",
    "charge_type",
    "health",
    "manufacturer",
    "model_name",
    "serial_number",
    "status",
    "technology",
    "type",
    "usb_type",
    "scope",
];

fn power_supply(class: &Path, f: &mut Families) {
    for n in names(class) {
        let dir = class.join(&n);
        if !dir.is_dir() {
            continue;
        }
        for (metric, file, div) in SUPPLY_NUMBERS {
            if let Some(v) = int(&dir.join(file)) {
                f.add(
                    &format!("node_power_supply_{metric}"),
                    "gauge",
                    &format!("{metric} value of /sys/class/power_supply/<power_supply>."),
                    &[("power_supply", &n)],
                    v as f64 / div,
                );
            }
        }
        let texts: Vec<(&str, String)> = SUPPLY_TEXTS
            .iter()
            .filter_map(|k| {
                let v = attr(&dir.join(k))?.trim().to_string();
                (!v.is_empty()).then_some((*k, v))
            })
            .collect();
        let mut labels: Vec<(&str, &str)> = vec![("power_supply", &n)];
        labels.extend(texts.iter().map(|(k, v)| (*k, v.as_str())));
        f.add(
            "node_power_supply_info",
            "gauge",
            "info of /sys/class/power_supply/<power_supply>.",
            &labels,
            1.0,
        );
    }
}

fn cpufreq(cpus: &Path, f: &mut Families) {
    for n in names(cpus) {
        let Some(cpu) = n
            .strip_prefix("cpu")
            .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let dir = cpus.join(&n).join("cpufreq");
        if !dir.is_dir() {
            continue;
        }
        for (metric, file, help) in [
            (
                "node_cpu_frequency_hertz",
                "cpuinfo_cur_freq",
                "Current CPU thread frequency in hertz.",
            ),
            (
                "node_cpu_frequency_avg_hertz",
                "cpuinfo_avg_freq",
                "Average CPU thread frequency in hertz.",
            ),
            (
                "node_cpu_frequency_min_hertz",
                "cpuinfo_min_freq",
                "Minimum CPU thread frequency in hertz.",
            ),
            (
                "node_cpu_frequency_max_hertz",
                "cpuinfo_max_freq",
                "Maximum CPU thread frequency in hertz.",
            ),
            (
                "node_cpu_scaling_frequency_hertz",
                "scaling_cur_freq",
                "Current scaled CPU thread frequency in hertz.",
            ),
            (
                "node_cpu_scaling_frequency_min_hertz",
                "scaling_min_freq",
                "Minimum scaled CPU thread frequency in hertz.",
            ),
            (
                "node_cpu_scaling_frequency_max_hertz",
                "scaling_max_freq",
                "Maximum scaled CPU thread frequency in hertz.",
            ),
        ] {
            // sysfs gives kHz.
            if let Some(v) = int(&dir.join(file)) {
                f.add(metric, "gauge", help, &[("cpu", cpu)], v as f64 * 1000.0);
            }
        }
        if let Some(gov) = attr(&dir.join("scaling_governor")).map(|g| g.trim().to_string())
            && !gov.is_empty()
        {
            let available = attr(&dir.join("scaling_available_governors")).unwrap_or_default();
            for g in available.split(' ').filter(|g| !g.trim().is_empty()) {
                let g = g.trim();
                f.add(
                    "node_cpu_scaling_governor",
                    "gauge",
                    "Current enabled CPU frequency governor.",
                    &[("cpu", cpu), ("governor", g)],
                    if g == gov { 1.0 } else { 0.0 },
                );
            }
        }
    }
}

/// /proc/schedstat's `cpuN` lines: the last three fields are the time spent running and
/// waiting (ns) and the timeslices run.
fn schedstat(text: &str, f: &mut Families) {
    for l in text.lines() {
        let mut it = l.split_whitespace();
        let Some(cpu) = it
            .next()
            .and_then(|c| c.strip_prefix("cpu"))
            .filter(|c| !c.is_empty())
        else {
            continue;
        };
        let v: Vec<u64> = it.filter_map(|x| x.parse().ok()).collect();
        if v.len() < 9 {
            continue;
        }
        let labels = [("cpu", cpu)];
        f.add(
            "node_schedstat_running_seconds_total",
            "counter",
            "Number of seconds CPU spent running a process.",
            &labels,
            v[6] as f64 / 1e9,
        );
        f.add(
            "node_schedstat_waiting_seconds_total",
            "counter",
            "Number of seconds spent by processing waiting for this CPU.",
            &labels,
            v[7] as f64 / 1e9,
        );
        f.add(
            "node_schedstat_timeslices_total",
            "counter",
            "Number of timeslices executed by CPU.",
            &labels,
            v[8] as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensor_file_names_split_as_node_exporter_does() {
        assert_eq!(explode("temp1_crit_alarm"), Some(("temp", 1, "crit_alarm")));
        assert_eq!(explode("pwm2"), Some(("pwm", 2, "")));
        assert_eq!(explode("beep_enable"), Some(("beep_enable", 0, "")));
        assert_eq!(explode("in0_input"), Some(("in", 0, "input")));
        assert_eq!(explode("fan1_"), None);
        assert_eq!(explode("0abc"), None);
        assert_eq!(explode("in0x"), None);
        assert_eq!(clean("Core 0"), "core_0");
        assert_eq!(clean("_coretemp.0_"), "coretemp_0");
    }

    #[test]
    fn reads_this_host_without_failing() {
        // A VM may have none of these; a host with sensors lists them. Either way no panic.
        let f = read(Path::new("/sys"), Path::new("/proc"));
        for (name, fam) in &f.0 {
            assert!(name.starts_with("node_"), "{name}");
            assert!(!fam.samples.is_empty());
        }
    }
}
