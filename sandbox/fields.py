"""Exportable contact fields and the human labels Constant Contact puts in the header row.

The guide's example header (``First name,Last name,Email address - other,Updated At``)
fixes four labels; the rest are invented in the same style so a client that maps
labels back to field names is exercised on every column.
"""

from __future__ import annotations

from enum import StrEnum


class ContactField(StrEnum):
    """Field names accepted in a ContactsExport ``fields`` array, in default column order."""

    FIRST_NAME = "first_name"
    LAST_NAME = "last_name"
    EMAIL_ADDRESS = "email_address"
    EMAIL_LISTS = "email_lists"
    PHONE_NUMBER = "phone_number"
    COMPANY_NAME = "company_name"
    JOB_TITLE = "job_title"
    SOCIAL_PROFILES = "social_profiles"
    WEBSITE = "website"
    NOTES = "notes"
    STREET = "street"
    CITY = "city"
    STATE = "state"
    ZIP = "zip"
    COUNTRY = "country"
    ANNIVERSARY = "anniversary"
    BIRTHDAY = "birthday"
    BIRTHDAY_DAY = "birthday_day"
    BIRTHDAY_MONTH = "birthday_month"
    SOURCE_NAME = "source_name"
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"
    EMAIL_OPTIN = "email_optin"
    EMAIL_PERMISSION = "email_permission"
    EMAIL_OPTIN_SOURCE = "email_optin_source"
    EMAIL_OPTIN_DATE = "email_optin_date"
    EMAIL_OPTOUT_DATE = "email_optout_date"
    EMAIL_OPTOUT_SOURCE = "email_optout_source"
    EMAIL_OPTOUT_REASON = "email_optout_reason"
    SMS_NUMBER = "sms_number"
    SMS_CONSENT_DATE = "sms_consent_date"
    SMS_STATUS = "sms_status"


LABELS: dict[ContactField, str] = {
    ContactField.FIRST_NAME: "First name",
    ContactField.LAST_NAME: "Last name",
    ContactField.EMAIL_ADDRESS: "Email address - other",
    ContactField.EMAIL_LISTS: "Email lists",
    ContactField.PHONE_NUMBER: "Phone number - other",
    ContactField.COMPANY_NAME: "Company name",
    ContactField.JOB_TITLE: "Job title",
    ContactField.SOCIAL_PROFILES: "Social profiles",
    ContactField.WEBSITE: "Website",
    ContactField.NOTES: "Notes",
    ContactField.STREET: "Street address - other",
    ContactField.CITY: "City - other",
    ContactField.STATE: "State/Province - other",
    ContactField.ZIP: "Zip/Postal code - other",
    ContactField.COUNTRY: "Country - other",
    ContactField.ANNIVERSARY: "Anniversary",
    ContactField.BIRTHDAY: "Birthday",
    ContactField.BIRTHDAY_DAY: "Birthday day",
    ContactField.BIRTHDAY_MONTH: "Birthday month",
    ContactField.SOURCE_NAME: "Source name",
    ContactField.CREATED_AT: "Created At",
    ContactField.UPDATED_AT: "Updated At",
    ContactField.EMAIL_OPTIN: "Email opt-in",
    ContactField.EMAIL_PERMISSION: "Email permission status",
    ContactField.EMAIL_OPTIN_SOURCE: "Email opt-in source",
    ContactField.EMAIL_OPTIN_DATE: "Email opt-in date",
    ContactField.EMAIL_OPTOUT_DATE: "Email opt-out date",
    ContactField.EMAIL_OPTOUT_SOURCE: "Email opt-out source",
    ContactField.EMAIL_OPTOUT_REASON: "Email opt-out reason",
    ContactField.SMS_NUMBER: "SMS number",
    ContactField.SMS_CONSENT_DATE: "SMS consent date",
    ContactField.SMS_STATUS: "SMS status",
}

DEFAULT_FIELDS: tuple[ContactField, ...] = tuple(ContactField)
"""An export without ``fields`` gets every column, in enum order."""

EMAIL_DEPENDENT_FIELDS = frozenset(
    {
        ContactField.EMAIL_OPTIN_SOURCE,
        ContactField.EMAIL_OPTIN_DATE,
        ContactField.EMAIL_OPTOUT_SOURCE,
        ContactField.EMAIL_OPTOUT_DATE,
        ContactField.EMAIL_OPTOUT_REASON,
    }
)
"""The guide: these export only when ``email_address`` is exported too; otherwise dropped."""


def label(field: ContactField) -> str:
    return LABELS[field]


def effective_fields(requested: list[str] | None) -> tuple[ContactField, ...]:
    """Resolve a request's ``fields`` the way Constant Contact does.

    Unknown names are silently dropped (the guide says so), duplicates keep their
    first position, and the email-dependent fields vanish without ``email_address``.
    """
    if requested is None:
        return DEFAULT_FIELDS
    known = {f.value: f for f in ContactField}
    chosen: list[ContactField] = []
    for name in requested:
        resolved = known.get(name)
        if resolved is not None and resolved not in chosen:
            chosen.append(resolved)
    if ContactField.EMAIL_ADDRESS not in chosen:
        chosen = [f for f in chosen if f not in EMAIL_DEPENDENT_FIELDS]
    return tuple(chosen)
