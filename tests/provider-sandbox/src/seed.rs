//! Deterministic seed data. Contact `n` is drawn from its own ChaCha stream (seed, stream `n`),
//! so it is the same whatever the total count, and data never depends on the clock: every
//! timestamp lies in the year before [`SEED_BASE_MS`] (2026-01-01T00:00:00Z).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::keap::model::{Address, Company, Contact, CustomFieldValue, EmailAddress, PhoneNumber};
use crate::time::{format_ms, SEED_BASE_MS};

pub(crate) const DAY_MS: i64 = 24 * 60 * 60 * 1000;
pub(crate) const YEAR_MS: i64 = 365 * DAY_MS;
/// Share of contacts (per mille) that belong to a bulk import and share its exact
/// `create_time`/`update_time`: real accounts have such runs, and they are what breaks
/// pagination that does not tie-break on id.
pub(crate) const BULK_IMPORT_PER_MILLE: u32 = 100;
/// Stream reserved for account-wide draws (bulk import instants).
const ACCOUNT_STREAM: u64 = u64::MAX;

#[rustfmt::skip]
pub(crate) const GIVEN_NAMES: &[&str] = &[
    "Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Sophia", "Elijah", "Isabella", "James",
    "Ava", "William", "Mia", "Benjamin", "Evelyn", "Lucas", "Harper", "Henry", "Camila",
    "Theodore", "Gianna", "Jack", "Abigail", "Levi", "Luna", "Alexander", "Ella", "Jackson",
    "Elizabeth", "Mateo", "Sofia", "Daniel", "Emily", "Michael", "Avery", "Mason", "Mila",
    "Sebastian", "Scarlett", "Ethan", "Eleanor", "Logan", "Madison", "Owen", "Layla", "Samuel",
    "Penelope", "Jacob", "Aria", "Asher", "Chloe", "Aiden", "Grace", "John", "Ellie", "Joseph",
    "Nora", "Wyatt", "Hazel", "David", "Zoey", "Leo", "Riley", "Luke", "Victoria", "Julian",
    "Lily", "Hudson", "Aurora", "Grayson", "Violet", "Matthew", "Nova", "Ezra", "Hannah",
    "Gabriel", "Emilia", "Carter", "Zoe", "Isaac", "Stella", "Jayden", "Everly", "Anthony", "Isla",
    "Dylan", "Leah", "Lincoln", "Lillian", "Thomas", "Addison", "Maverick", "Willow", "Elias",
    "Lucy", "Josiah", "Paisley", "Charles", "Natalie", "Caleb", "Naomi", "Christopher",
];
#[rustfmt::skip]
pub(crate) const FAMILY_NAMES: &[&str] = &[
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott",
    "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera",
    "Campbell", "Mitchell", "Carter", "Roberts", "Gomez", "Phillips", "Evans", "Turner", "Diaz",
    "Parker", "Cruz", "Edwards", "Collins", "Reyes", "Stewart", "Morris", "Morales", "Murphy",
    "Cook", "Rogers", "Gutierrez", "Ortiz", "Morgan", "Cooper", "Peterson", "Bailey", "Reed",
    "Kelly", "Howard", "Ramos", "Kim", "Cox", "Ward", "Richardson", "Watson", "Brooks", "Chavez",
    "Wood", "James", "Bennett", "Gray", "Mendoza", "Ruiz", "Hughes", "Price", "Alvarez",
    "Castillo", "Sanders", "Patel", "Myers", "Long", "Ross", "Foster", "Jimenez", "O'Brien",
    "Müller", "Zhang",
];
const PREFIXES: &[&str] = &["Mr.", "Ms.", "Mrs.", "Dr.", "Prof."];
const SUFFIXES: &[&str] = &["Jr.", "Sr.", "II", "III", "PhD", "MD"];
#[rustfmt::skip]
pub(crate) const STREET_NAMES: &[&str] = &[
    "Maple", "Oak", "Pine", "Cedar", "Elm", "Washington", "Lake", "Hill", "Park", "Main", "Sunset",
    "Highland", "Ridge", "River", "Church", "Spring", "Willow", "Meadow", "Forest", "Chestnut",
    "Walnut", "Jefferson", "Lincoln", "Madison", "Franklin",
];
const STREET_KINDS: &[&str] = &["St", "Ave", "Blvd", "Rd", "Ln", "Dr", "Ct", "Way", "Pl"];
/// A city with everything an address, phone number and time zone need.
struct Place {
    city: &'static str,
    region: &'static str,
    region_code: &'static str,
    postal_prefix: &'static str,
    country_code: &'static str,
    country: &'static str,
    time_zone: &'static str,
    locale: &'static str,
    dial_code: &'static str,
}

const fn place(
    [city, region, region_code, postal_prefix, country_code, country, time_zone, locale, dial_code]: [&'static str; 9],
) -> Place {
    Place {
        city,
        region,
        region_code,
        postal_prefix,
        country_code,
        country,
        time_zone,
        locale,
        dial_code,
    }
}

const PLACES: &[Place] = &[
    place([
        "Phoenix",
        "Arizona",
        "US-AZ",
        "850",
        "USA",
        "United States",
        "America/Phoenix",
        "en_US",
        "+1",
    ]),
    place([
        "Austin",
        "Texas",
        "US-TX",
        "787",
        "USA",
        "United States",
        "America/Chicago",
        "en_US",
        "+1",
    ]),
    place([
        "Denver",
        "Colorado",
        "US-CO",
        "802",
        "USA",
        "United States",
        "America/Denver",
        "en_US",
        "+1",
    ]),
    place([
        "Seattle",
        "Washington",
        "US-WA",
        "981",
        "USA",
        "United States",
        "America/Los_Angeles",
        "en_US",
        "+1",
    ]),
    place([
        "Chicago",
        "Illinois",
        "US-IL",
        "606",
        "USA",
        "United States",
        "America/Chicago",
        "en_US",
        "+1",
    ]),
    place([
        "Boston",
        "Massachusetts",
        "US-MA",
        "021",
        "USA",
        "United States",
        "America/New_York",
        "en_US",
        "+1",
    ]),
    place([
        "Atlanta",
        "Georgia",
        "US-GA",
        "303",
        "USA",
        "United States",
        "America/New_York",
        "en_US",
        "+1",
    ]),
    place([
        "Portland",
        "Oregon",
        "US-OR",
        "972",
        "USA",
        "United States",
        "America/Los_Angeles",
        "en_US",
        "+1",
    ]),
    place([
        "Miami",
        "Florida",
        "US-FL",
        "331",
        "USA",
        "United States",
        "America/New_York",
        "en_US",
        "+1",
    ]),
    place([
        "Nashville",
        "Tennessee",
        "US-TN",
        "372",
        "USA",
        "United States",
        "America/Chicago",
        "en_US",
        "+1",
    ]),
    place([
        "Toronto",
        "Ontario",
        "CA-ON",
        "M5V",
        "CAN",
        "Canada",
        "America/Toronto",
        "en_CA",
        "+1",
    ]),
    place([
        "Vancouver",
        "British Columbia",
        "CA-BC",
        "V6B",
        "CAN",
        "Canada",
        "America/Vancouver",
        "en_CA",
        "+1",
    ]),
    place([
        "London",
        "England",
        "GB-ENG",
        "SW1",
        "GBR",
        "United Kingdom",
        "Europe/London",
        "en_GB",
        "+44",
    ]),
    place([
        "Sydney",
        "New South Wales",
        "AU-NSW",
        "200",
        "AUS",
        "Australia",
        "Australia/Sydney",
        "en_AU",
        "+61",
    ]),
];
#[rustfmt::skip]
pub(crate) const COMPANIES: &[&str] = &[
    "Acme Landscaping", "Bright Smile Dental", "Summit Fitness Studio", "Blue Harbor Realty",
    "Evergreen Bookkeeping", "Northwind Coffee Roasters", "Lakeside Yoga", "Pinnacle HVAC",
    "Redwood Law Group", "Silverline Photography", "Golden Gate Bakery", "Cornerstone Roofing",
    "Harborview Veterinary", "Maple Leaf Tutoring", "Urban Sprout Florist", "Ironclad Auto Repair",
    "Sunrise Chiropractic", "Crystal Clear Pools", "Willow Creek Wellness",
    "Peak Performance Coaching", "Brightpath Marketing", "Cedar & Sage Interiors",
    "Trailhead Outfitters", "Velvet Spoon Catering",
];
#[rustfmt::skip]
const JOB_TITLES: &[&str] = &[
    "Owner", "Office Manager", "Marketing Director", "Operations Manager", "Sales Representative",
    "Bookkeeper", "Founder & CEO", "Head of Customer Success", "Practice Manager",
    "Executive Assistant", "Account Executive", "Studio Coordinator", "General Manager",
];
pub(crate) const EMAIL_DOMAINS: &[&str] = &[
    "example.com",
    "example.net",
    "example.org",
    "mail.example.com",
];
#[rustfmt::skip]
const CONTACT_TYPES: &[&str] = &[
    "Lead", "Customer", "Prospect", "Partner", "Vendor", "Other",
];
#[rustfmt::skip]
const SOURCE_TYPES: &[&str] = &[
    "API", "WEBFORM", "IMPORT", "MANUAL", "LANDING_PAGE", "INTEGRATION",
];
#[rustfmt::skip]
const OPT_STATUSES: &[&str] = &[
    "SINGLE_OPT_IN", "DOUBLE_OPT_IN", "UNENGAGED_MARKETABLE", "NON_MARKETABLE",
];
#[rustfmt::skip]
const OPT_IN_REASONS: &[&str] = &[
    "Customer opted-in through webform", "Imported from previous CRM with consent",
    "Opted in at checkout", "Signed up for the newsletter",
];
const PHONE_KINDS: &[&str] = &["Mobile", "Work", "Home", "Other"];
#[rustfmt::skip]
pub(crate) const NOTE_SENTENCES: &[&str] = &[
    "Met at the spring trade show and asked for a follow-up call.",
    "Prefers email over phone; best reached in the morning.",
    "Interested in the annual plan once the current contract ends.",
    "Referred by an existing customer; offer the referral discount.",
    "Requested a quote for the premium package.", "Left a voicemail, waiting for a callback.",
    "Attended the onboarding webinar and completed the checklist.",
    "Asked about integrating with their accounting software.",
    "Renewal is due next quarter; schedule a review meeting.",
    "Very happy with support, may leave a testimonial.",
];
/// (custom field id, kind): 0 = text choice, 1 = number, 2 = date, 3 = yes/no.
const CUSTOM_FIELDS: &[(&str, u8)] =
    &[("2", 0), ("4", 1), ("6", 2), ("8", 3), ("10", 0), ("12", 1)];
#[rustfmt::skip]
const CUSTOM_TEXT: &[&str] = &[
    "Gold", "Silver", "Bronze", "Trial", "Enterprise", "Newsletter only",
];

pub(crate) fn pick<'a, R: Rng>(rng: &mut R, items: &[&'a str]) -> &'a str {
    items[rng.gen_range(0..items.len())]
}

/// Lower-case ASCII for email local parts and hostnames (`Müller` -> `muller`, `O'Brien` ->
/// `obrien`); the names themselves keep their non-ASCII letters.
pub(crate) fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c == 'ü' {
                'u'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

pub(crate) fn chance<R: Rng>(rng: &mut R, per_mille: u32) -> bool {
    rng.gen_range(0..1000) < per_mille
}

/// The instants of the account's bulk imports: a few fixed moments within the seed year.
pub fn bulk_import_times(seed: u64) -> [i64; 4] {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(ACCOUNT_STREAM);
    // Whole seconds, as an importer would stamp them.
    [0; 4].map(|_| SEED_BASE_MS - rng.gen_range(1..YEAR_MS / 1000) * 1000)
}

/// Generates contacts with ids `1..=count`.
pub fn generate_contacts(seed: u64, count: usize) -> Vec<Contact> {
    let bulk = bulk_import_times(seed);
    (0..count as u64)
        .map(|index| generate_contact(seed, index, &bulk))
        .collect()
}

/// Generates the contact at zero-based `index` (id `index + 1`).
pub fn generate_contact(seed: u64, index: u64, bulk_times: &[i64; 4]) -> Contact {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    let id = index + 1;

    let given = pick(&mut rng, GIVEN_NAMES);
    let family = pick(&mut rng, FAMILY_NAMES);
    let place = &PLACES[rng.gen_range(0..PLACES.len())];
    let domain = pick(&mut rng, EMAIL_DOMAINS);
    let local = format!("{}.{}{id}", slug(given), slug(family));

    let (create_ms, update_ms) = if chance(&mut rng, BULK_IMPORT_PER_MILLE) {
        let at = bulk_times[rng.gen_range(0..bulk_times.len())];
        (at, at)
    } else {
        let create = SEED_BASE_MS - rng.gen_range(DAY_MS..YEAR_MS);
        // A third were never edited after creation.
        let update = if chance(&mut rng, 333) {
            create
        } else {
            create + rng.gen_range(0..SEED_BASE_MS - create)
        };
        (create, update)
    };

    let is_opt_in = chance(&mut rng, 700);
    let mut email_addresses = vec![EmailAddress {
        email: format!("{local}@{domain}"),
        field: "EMAIL1".to_owned(),
        email_opt_status: pick(&mut rng, OPT_STATUSES).to_owned(),
        is_opt_in,
        opt_in_reason: is_opt_in.then(|| pick(&mut rng, OPT_IN_REASONS).to_owned()),
    }];
    if chance(&mut rng, 150) {
        email_addresses.push(EmailAddress {
            email: format!("{}.{id}@work.example.com", slug(given)),
            field: "EMAIL2".to_owned(),
            email_opt_status: "NON_MARKETABLE".to_owned(),
            is_opt_in: false,
            opt_in_reason: None,
        });
    }

    let phone_count = if chance(&mut rng, 200) { 2 } else { 1 };
    let phone_numbers = (1..=phone_count)
        .map(|slot| {
            // 555-01xx numbers are reserved for fiction.
            let area = rng.gen_range(201..990);
            let line = rng.gen_range(100..200);
            PhoneNumber {
                number: format!("({area}) 555-0{line}"),
                field: format!("PHONE{slot}"),
                kind: pick(&mut rng, PHONE_KINDS).to_owned(),
                extension: chance(&mut rng, 150).then(|| rng.gen_range(10..999).to_string()),
                number_e164: format!("{}{area}5550{line}", place.dial_code),
            }
        })
        .collect();

    let zip_tail: u32 = rng.gen_range(10..99);
    let mut addresses = vec![Address {
        line1: format!(
            "{} {} {}",
            rng.gen_range(1..9999),
            pick(&mut rng, STREET_NAMES),
            pick(&mut rng, STREET_KINDS)
        ),
        line2: chance(&mut rng, 400).then(|| format!("Suite {}", rng.gen_range(100..900))),
        locality: place.city.to_owned(),
        region: place.region.to_owned(),
        region_code: place.region_code.to_owned(),
        postal_code: format!("{}{zip_tail}", place.postal_prefix),
        country_code: place.country_code.to_owned(),
        country: place.country.to_owned(),
        field: "BILLING".to_owned(),
    }];
    if chance(&mut rng, 100) {
        addresses.push(Address {
            line1: format!(
                "{} {} Ave",
                rng.gen_range(1..9999),
                pick(&mut rng, STREET_NAMES)
            ),
            line2: None,
            field: "SHIPPING".to_owned(),
            ..addresses[0].clone()
        });
    }

    let company = chance(&mut rng, 850).then(|| {
        let n = rng.gen_range(0..COMPANIES.len());
        Company {
            id: (n + 1).to_string(),
            company_name: COMPANIES[n].to_owned(),
        }
    });

    let mut tag_ids: Vec<u32> = (0..rng.gen_range(0..6))
        .map(|_| rng.gen_range(90..140))
        .collect();
    tag_ids.sort_unstable();
    tag_ids.dedup();

    let mut custom_fields = Vec::new();
    for &(field_id, kind) in CUSTOM_FIELDS {
        if !chance(&mut rng, 400) {
            continue;
        }
        let content = match kind {
            0 => Value::from(pick(&mut rng, CUSTOM_TEXT)),
            1 => Value::from(rng.gen_range(0..10_000)),
            2 => Value::from(format_ms(create_ms - rng.gen_range(0..YEAR_MS))[..10].to_owned()),
            _ => Value::from(chance(&mut rng, 500)),
        };
        custom_fields.push(CustomFieldValue {
            id: field_id.to_owned(),
            content,
        });
    }

    let handle = format!("{}{}", slug(given), slug(family));
    let notes = (0..rng.gen_range(0..3))
        .map(|_| pick(&mut rng, NOTE_SENTENCES))
        .collect::<Vec<_>>()
        .join(" ");

    Contact {
        id: id.to_string(),
        given_name: given.to_owned(),
        family_name: family.to_owned(),
        middle_name: chance(&mut rng, 300).then(|| {
            let letter = char::from(b'A' + rng.gen_range(0..26u8));
            format!("{letter}.")
        }),
        preferred_name: given.to_owned(),
        prefix: chance(&mut rng, 400).then(|| pick(&mut rng, PREFIXES).to_owned()),
        suffix: chance(&mut rng, 60).then(|| pick(&mut rng, SUFFIXES).to_owned()),
        email_addresses,
        phone_numbers,
        addresses,
        company,
        job_title: pick(&mut rng, JOB_TITLES).to_owned(),
        website: format!("https://www.{handle}.example.com"),
        owner_id: rng.gen_range(1..8).to_string(),
        contact_type: pick(&mut rng, CONTACT_TYPES).to_owned(),
        source_type: pick(&mut rng, SOURCE_TYPES).to_owned(),
        leadsource_id: rng.gen_range(1..30).to_string(),
        time_zone: place.time_zone.to_owned(),
        preferred_locale: place.locale.to_owned(),
        birth_date: chance(&mut rng, 500).then(|| {
            format!(
                "{}-{:02}-{:02}",
                rng.gen_range(1950..2005),
                rng.gen_range(1..13),
                rng.gen_range(1..29)
            )
        }),
        spouse_name: chance(&mut rng, 200).then(|| pick(&mut rng, GIVEN_NAMES).to_owned()),
        score_value: rng.gen_range(0..100).to_string(),
        tag_ids: tag_ids.iter().map(u32::to_string).collect(),
        custom_fields,
        notes,
        create_time: format_ms(create_ms),
        update_time: format_ms(update_ms),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::time::parse_ms;

    #[test]
    fn same_seed_same_data_and_prefix_stable() {
        let a = generate_contacts(42, 300);
        let b = generate_contacts(42, 300);
        assert_eq!(a, b);
        let shorter = generate_contacts(42, 100);
        assert_eq!(&a[..100], &shorter[..]);
        let other = generate_contacts(43, 300);
        assert_ne!(a, other);
    }

    #[test]
    fn contacts_are_about_one_kilobyte() {
        let contacts = generate_contacts(42, 2000);
        let total: usize = contacts
            .iter()
            .map(|c| serde_json::to_string(c).unwrap().len())
            .sum();
        let average = total / contacts.len();
        assert!((800..=1400).contains(&average), "average {average} bytes");
    }

    #[test]
    fn ids_ascend_and_times_lie_in_the_seed_year() {
        let contacts = generate_contacts(7, 500);
        for (i, c) in contacts.iter().enumerate() {
            assert_eq!(c.id, (i + 1).to_string());
            let created = parse_ms(&c.create_time).unwrap();
            let updated = parse_ms(&c.update_time).unwrap();
            assert!(created <= updated, "{c:?}");
            assert!(updated <= SEED_BASE_MS);
            assert!(created >= SEED_BASE_MS - YEAR_MS);
        }
    }

    #[test]
    fn bulk_imports_share_timestamps() {
        let contacts = generate_contacts(42, 2000);
        let first_bulk = format_ms(bulk_import_times(42)[0]);
        let sharing = contacts
            .iter()
            .filter(|c| c.update_time == first_bulk)
            .count();
        assert!(sharing > 20, "only {sharing} contacts share a bulk instant");
    }
}
