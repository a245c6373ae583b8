"""Value pools the contact generator draws from.

The pools are deliberately hostile to naive CSV handling: commas, double
quotes, non-ASCII letters, CJK, emoji, and notes with both ``\\n`` and
``\\r\\n`` inside a field.  A client that splits on newlines or commas, or
decodes as Latin-1, breaks on the first few hundred rows instead of in
production.  Empty strings appear in optional pools so some cells are empty.
"""

from __future__ import annotations

FIRST_NAMES = (
    "Dipali",
    "Jake",
    "Jack",
    "Zoë",
    "Jürgen",
    "José",
    "Renée",
    "Åsa",
    "Søren",
    "Мария",
    "中文",
    "李",
    "Ana 🌟",
    'Robert "Bob"',
    "Mary, Jane",
    "O'Neil",
    "Jean-Luc",
    "Chloé",
    "Ngozi",
    "Priya",
    "Ümit",
    "Ólafur",
    "Kenji",
    "",
)

LAST_NAMES = (
    "Nipperdipper",
    "Dodge",
    "Smith",
    "Smith, Jr.",
    "Müller",
    "Núñez",
    "王",
    "山田",
    "Johnson",
    '"The Rock" Johnson',
    "García",
    "Łukasiewicz",
    "Þórsdóttir",
    "Nguyễn",
    "O'Brien",
    "van der Berg",
    "Okafor",
    "🦄",
    "Brown",
    "",
)

EMAIL_HANDLES = (
    "ddipper",
    "jdodge",
    "jacksbbq",
    "zoe",
    "juergen",
    "jose",
    "renee",
    "asa",
    "soren",
    "maria",
    "li.wei",
    "ana",
    "bob",
    "mary.jane",
    "oneil",
    "jl",
)

EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "jdogepancakes.com")

PHONES = (
    "",
    "",
    "+1 (555) 010-{n:04d}",
    "555.010.{n:04d}",
    "+44 20 7946 {n:04d}",
    "+49 30 {n:04d}",
)

COMPANIES = (
    "",
    "",
    "Acme, Inc.",
    'Jake\'s "Pancakes" LLC',
    "Müller & Söhne GmbH",
    "株式会社サンプル",
    "Initech",
    "Globex Corporation",
    "Café Olé, S.A.",
    "Umbrella 🌂 Co",
)

JOB_TITLES = (
    "",
    "",
    "CEO",
    "Director, Marketing",
    'Chief "Everything" Officer',
    "Ingénieur",
    "Sales rep",
    "エンジニア",
)

SOCIAL_PROFILES = (
    "",
    "",
    "",
    "https://twitter.com/{h}",
    "https://www.facebook.com/{h}",
    "twitter: @{h}, facebook: {h}",
)

WEBSITES = ("", "", "https://{h}.example.com", "http://example.com/~{h}?a=1&b=2")

NOTES = (
    "",
    "",
    "",
    "",
    "Met at the trade show, booth 12",
    'Prefers to be called "Bob"',
    "Line one\nLine two",
    "Windows note\r\nsecond line\r\nthird line",
    "Mixed\nline\r\nendings, with a comma",
    "Emoji 🎉 party, 中文 text",
    "Ünïcödé ✓ — dash",
    "  leading and trailing spaces  ",
    '"Quoted at both ends"',
    "=SUM(A1:A2)",
)

STREETS = (
    "",
    "123 Main St",
    "123 Main St, Apt 4",
    "Bahnhofstraße 1",
    '1 "The Lodge" Lane',
    "1-2-3 Shibuya",
    "Rua Augusta, 1500",
)

CITIES = ("", "Springfield", "Zürich", "São Paulo", "北京", "Montréal", "Boston", "Kraków")

STATES = ("", "MA", "CA", "Île-de-France", "Bayern", "Québec", "NY")

ZIPS = ("", "02110", "8001", "01310-100", "H2X 1Y4", "100-0001", "SW1A 1AA")

COUNTRIES = ("", "United States", "Deutschland", "中国", "Côte d'Ivoire", "Brasil", "Canada")

SOURCE_NAMES = (
    "Website signup form",
    "Import: contacts_2019.csv",
    "API",
    "Facebook lead ad",
    'Event "Spring, 2023"',
)

OPTIN_SOURCES = ("ACCOUNT", "CONTACT")

OPTOUT_SOURCES = ("ACCOUNT", "CONTACT")

OPTOUT_REASONS = (
    "",
    "Too many emails, please stop",
    'Said "no thanks"',
    "No longer interested\nin this topic",
    "Ich habe mich abgemeldet",
)

SMS_STATUSES = ("explicit", "not_set", "unsubscribed", "pending_confirmation")

TIMEZONE_OFFSETS = ("-0500", "-0400", "-0800", "+0000", "+0100", "+0530")

LIST_NAMES = (
    "Newsletter",
    "VIP, Gold tier",
    'Customers "Premium"',
    "Événements 2024",
    "中文 subscribers",
    "Beta testers 🧪",
    "Webinar attendees",
    "Partners",
    "Leads - Q3",
    "Donors",
    "Volunteers",
    "Staff",
)
"""One name per generated list; the count fixes how many lists every seed has."""

TAG_COUNT = 6
