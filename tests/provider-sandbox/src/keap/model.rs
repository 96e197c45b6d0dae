//! Keap REST v2 resource shapes, as in the `Contact` model of infusionsoft/keap-sdk
//! (`sdks/v2`, <https://github.com/infusionsoft/keap-sdk/tree/main/sdks/v2>): string ids,
//! snake_case fields, `*_time` timestamps.

use serde::Serialize;
use serde_json::Value;

/// A Keap REST v2 contact as the list endpoint returns it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Contact {
    /// Numeric id, as a string (v2 ids are strings).
    pub id: String,
    /// First name.
    pub given_name: String,
    /// Last name.
    pub family_name: String,
    /// Middle name or initial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    /// Nickname.
    pub preferred_name: String,
    /// Name prefix (`Mr.`, `Dr.`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Name suffix (`Jr.`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Email slots (`EMAIL1`..`EMAIL3`).
    pub email_addresses: Vec<EmailAddress>,
    /// Phone slots (`PHONE1`..`PHONE5`).
    pub phone_numbers: Vec<PhoneNumber>,
    /// Address slots (`BILLING`, `SHIPPING`, `OTHER`).
    pub addresses: Vec<Address>,
    /// The company the contact belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company: Option<Company>,
    /// Job title.
    pub job_title: String,
    /// Personal website URL.
    pub website: String,
    /// Id of the Keap user who owns the contact.
    pub owner_id: String,
    /// `Lead`, `Customer`, ...
    pub contact_type: String,
    /// How the contact was created (`API`, `WEBFORM`, `IMPORT`, ...).
    pub source_type: String,
    /// Lead source id.
    pub leadsource_id: String,
    /// IANA time zone.
    pub time_zone: String,
    /// Locale such as `en_US`.
    pub preferred_locale: String,
    /// Birth date (`YYYY-MM-DD`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// Spouse's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spouse_name: Option<String>,
    /// Lead score, a string in v2.
    pub score_value: String,
    /// Applied tag ids (strings in v2).
    pub tag_ids: Vec<String>,
    /// Custom field values.
    pub custom_fields: Vec<CustomFieldValue>,
    /// Free-text notes.
    pub notes: String,
    /// Creation time, RFC 3339 with milliseconds.
    pub create_time: String,
    /// Last update time, RFC 3339 with milliseconds.
    pub update_time: String,
}

/// One email slot.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EmailAddress {
    /// The address.
    pub email: String,
    /// Slot: `EMAIL1`, `EMAIL2`, `EMAIL3`.
    pub field: String,
    /// Marketing status, e.g. `SINGLE_OPT_IN`.
    pub email_opt_status: String,
    /// Whether the contact opted in.
    pub is_opt_in: bool,
    /// Why the contact opted in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opt_in_reason: Option<String>,
}

/// One phone slot.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhoneNumber {
    /// The number as typed.
    pub number: String,
    /// Slot: `PHONE1`..`PHONE5`.
    pub field: String,
    /// `Mobile`, `Work`, `Home`, `Other`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Extension, often empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    /// The number in E.164 form.
    pub number_e164: String,
}

/// One address slot.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Address {
    /// Street line 1.
    pub line1: String,
    /// Street line 2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    /// City.
    pub locality: String,
    /// Region long name.
    pub region: String,
    /// ISO 3166-2 region code.
    pub region_code: String,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-3 country code.
    pub country_code: String,
    /// Country long name.
    pub country: String,
    /// Slot: `BILLING`, `SHIPPING`, `OTHER`.
    pub field: String,
}

/// The basic company reference embedded in a contact.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Company {
    /// Company id (string).
    pub id: String,
    /// Company name.
    pub company_name: String,
}

/// One custom field value; `content` may be any JSON type in v2.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CustomFieldValue {
    /// Custom field id (string).
    pub id: String,
    /// The value.
    pub content: Value,
}
