"""Who writes to the desk: ~40 customer companies (German, Austrian, Swiss,
South Tyrolean and English-speaking), their staff with names that carry
umlauts, ß and accents, role addresses, each person's language and mail
client. ``DOMAINS`` is what tests create organizations from."""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass

from tests.corpus.clients import (
    CLIENTS,
    COMPANY_CLIENTS,
    EXTRA_CLIENTS,
    EXTRA_COMPANY_CLIENTS,
    PERSONAL_CLIENTS,
    weighted,
)


@dataclass(frozen=True)
class Company:
    domain: str
    name: str
    lang: str  # language most of its staff write in
    country: str  # ISO code; decides the time zone and the phone prefix
    city: str
    street: str


@dataclass
class Person:
    name: str
    addr: str  # always lower case: the desk and its tests compare addresses as written
    company: Company
    lang: str
    client: str  # clients.CLIENTS key
    mailer: tuple[str, str] | None  # the X-Mailer/User-Agent of this person's client version
    title: str  # job title for the signature ("" for role addresses)
    phone: str
    role: bool = False  # a shared mailbox such as buchhaltung@

    @property
    def domain(self) -> str:
        return self.company.domain


COMPANIES: tuple[Company, ...] = (
    Company("stadtwerke-feldbach.at", "Stadtwerke Feldbach GmbH", "de", "AT", "8330 Feldbach",
            "Gleichenberger Straße 14"),
    Company("brandstetter-partner.at", "Brandstetter & Partner Rechtsanwälte OG", "de", "AT", "1010 Wien",
            "Schottenring 3/12"),
    Company("moebelhaus-lindner.de", "Möbelhaus Lindner GmbH & Co. KG", "de", "DE", "90402 Nürnberg",
            "Königstraße 88"),
    Company("kreditbank-waldviertel.at", "Kreditbank Waldviertel AG", "de", "AT", "3910 Zwettl",
            "Hauptplatz 7"),
    Company("klinikum-hochrhein.de", "Klinikum Hochrhein gGmbH", "de", "DE", "79761 Waldshut-Tiengen",
            "Kaiserstraße 93"),
    Company("notariat-obermayr.at", "Notariat Dr. Obermayr", "de", "AT", "4020 Linz", "Landstraße 31"),
    Company("weinkellerei-zoellner.de", "Weinkellerei Zöllner eG", "de", "DE", "67098 Bad Dürkheim",
            "Weinstraße Süd 5"),
    Company("alpenblick-versicherung.ch", "Alpenblick Versicherung AG", "de", "CH", "6002 Luzern",
            "Pilatusstrasse 21"),
    Company("stubenberg.gv.at", "Marktgemeinde Stubenberg", "de", "AT", "8223 Stubenberg am See",
            "Stubenberg 5"),
    Company("hafenlogistik-kiel.de", "Hafenlogistik Kiel GmbH", "de", "DE", "24143 Kiel", "Schwedenkai 2"),
    Company("energie-oberland.de", "Energie Oberland AG", "de", "DE", "82362 Weilheim", "Pöltnerstraße 40"),
    Company("treuhand-aarau.ch", "Treuhand Aarau AG", "de", "CH", "5000 Aarau", "Bahnhofstrasse 61"),
    Company("papierfabrik-steyr.at", "Papierfabrik Steyr Ges.m.b.H.", "de", "AT", "4400 Steyr",
            "Wehrgrabengasse 9"),
    Company("bauer-elektrotechnik.de", "Bauer Elektrotechnik GmbH", "de", "DE", "73728 Esslingen",
            "Plochinger Straße 112"),
    Company("holzbau-kaernten.at", "Holzbau Kärnten GmbH", "de", "AT", "9020 Klagenfurt",
            "Völkermarkter Ring 25"),
    Company("spedition-hirschmann.de", "Spedition Hirschmann GmbH", "de", "DE", "04129 Leipzig",
            "Maximilianallee 4"),
    Company("wertgrund-immobilien.at", "Wertgrund Immobilien GmbH", "de", "AT", "5020 Salzburg",
            "Getreidegasse 50"),
    Company("stb-fuchs.de", "Steuerberatung Fuchs & Kollegen", "de", "DE", "50667 Köln", "Hohe Straße 128"),
    Company("hs-weserbergland.de", "Hochschule Weserbergland", "de", "DE", "31785 Hameln", "Am Stockhof 2"),
    Company("jura-pharma.ch", "Jura Pharma AG", "de", "CH", "4051 Basel", "Steinenvorstadt 33"),
    Company("autohaus-grieskirchen.at", "Autohaus Grieskirchen GmbH", "de", "AT", "4710 Grieskirchen",
            "Linzer Straße 60"),
    Company("wohnbau-suedtirol.it", "Wohnbau Südtirol GmbH", "de", "IT", "39100 Bozen", "Museumstraße 19"),
    Company("druckerei-wallner.at", "Druckerei Wallner & Söhne KG", "de", "AT", "6020 Innsbruck",
            "Museumstraße 1"),
    Company("spital-linthgebiet.ch", "Spital Linthgebiet", "de", "CH", "8730 Uznach", "Gasterstrasse 25"),
    Company("maschinenbau-oehringen.de", "Maschinenbau Öhringen GmbH", "de", "DE", "74613 Öhringen",
            "Haller Straße 77"),
    Company("vorarlberger-textil.at", "Vorarlberger Textilwerke AG", "de", "AT", "6850 Dornbirn",
            "Färbergasse 15"),
    Company("harrowgate-housing.co.uk", "Harrowgate Housing Association", "en", "GB", "Leeds LS1 4AP",
            "14 Park Row"),
    Company("pinecrest-insurance.com", "Pinecrest Insurance Ltd", "en", "IE", "Dublin 2",
            "40 Merrion Square"),
    Company("fenwick-solicitors.co.uk", "Fenwick & Hale Solicitors LLP", "en", "GB", "Newcastle NE1 3DY",
            "7 Grey Street"),
    Company("liffey-credit.ie", "Liffey Credit Union", "en", "IE", "Dublin 8", "22 Thomas Street"),
    Company("northbrook-council.org.uk", "Northbrook District Council", "en", "GB", "Northbrook NB2 7TT",
            "Civic Centre, High Street"),
    Company("oakmere-health.co.uk", "Oakmere Health Partnership", "en", "GB", "Chester CH1 2HS",
            "3 Bridge Street"),
    Company("saltmarsh-capital.com", "Saltmarsh Capital Partners", "en", "GB", "London EC2V 7HH",
            "100 Wood Street"),
    Company("kestrel-analytics.io", "Kestrel Analytics B.V.", "en", "NL", "1017 Amsterdam",
            "Keizersgracht 241"),
    Company("tallinn-shipping.ee", "Tallinn Shipping OÜ", "en", "EE", "10111 Tallinn", "Sadama 25"),
    Company("zuiderzee-leasing.nl", "Zuiderzee Leasing N.V.", "en", "NL", "3811 Amersfoort",
            "Stationsplein 9"),
    Company("nordkapp-energi.no", "Nordkapp Energi AS", "en", "NO", "0150 Oslo", "Dronning Eufemias gate 16"),
    Company("valletta-trust.com.mt", "Valletta Trust Services Ltd", "en", "MT", "Valletta VLT 1117",
            "Republic Street 120"),
    Company("greystone.ac.uk", "Greystone University", "en", "GB", "Bath BA2 7AY", "Claverton Down"),
    Company("oresund-pension.dk", "Øresund Pension A/S", "en", "DK", "2100 København Ø",
            "Strandboulevarden 89"),
)
DOMAINS: list[str] = [c.domain for c in COMPANIES]

_PHONE_PREFIX = {"AT": "+43", "DE": "+49", "CH": "+41", "IT": "+39", "GB": "+44", "IE": "+353", "NL": "+31",
                 "EE": "+372", "NO": "+47", "MT": "+356", "DK": "+45"}

FIRST_NAMES = {
    "de": ("Ursula", "Bernhard", "Elfriede", "Johannes", "Veronika", "Dominik", "Theresa", "Florian",
           "Magdalena", "Matthias", "Christine", "Wolfgang", "Birgit", "Reinhard", "Gudrun", "Rüdiger",
           "Sönke", "Götz", "Jörn", "Ömer", "Ayşe", "Béatrice", "Noël", "Fränzi", "Zoé", "Hans-Jörg",
           "Annemarie", "Leonhard", "Ingrid", "Roswitha", "Maximilian", "Valentina", "Elisabeth", "Dragan",
           "Mirjam", "Sebastian", "Lisa-Marie", "Gernot", "Hildegard", "Kilian"),
    "en": ("Aoife", "Ciarán", "Eóin", "Gráinne", "Rhys", "Bethan", "Hamish", "Fiona", "Graham", "Imogen",
           "Rupert", "Harriet", "Declan", "Saoirse", "Søren", "Mette", "Anniken", "Noémie", "José", "Inês",
           "Kadri", "Margus", "Daan", "Femke", "Malcolm", "Priyanka", "Tobias", "Eleanor", "Callum", "Niamh"),
}
LAST_NAMES = {
    "de": ("Gößl", "Mühlbauer", "Schöberl", "Weißenböck", "Höllrigl", "Strauß", "Öztürk", "Kovačević",
           "Dvořák", "Großauer", "Fößleitner", "Bräuer", "Häusler", "Kröll", "Rüdisühli", "Glöckner", "Spieß",
           "Süß", "Würthner", "Pröll", "Haslinger", "Eberhardt", "Thaler", "Kogler", "Zehetner", "Brünnler",
           "Aigner", "Wimmer", "Obermüller", "Rößler", "Stöckl", "Lindemann", "Hämmerle", "Fäßler",
           "Grünwald"),
    "en": ("Fitzgerald", "Ó Briain", "Whitaker", "Pemberton", "Ashworth", "McAllister", "Haldane", "Nørgaard",
           "Ellingsen", "van der Berg", "de Jong", "Kask", "Tamm", "Borg", "Camilleri", "Okafor", "Gallagher",
           "Rees", "Sutherland", "Ní Bhriain", "Lefèvre", "Müller-Hart", "Þórsdóttir", "Brennan", "Hollis"),
}
TITLES = {
    "de": ("IT-Administration", "Leitung Rechnungswesen", "Assistenz der Geschäftsführung", "Rechtsabteilung",
           "Team Digitalisierung", "Personalverwaltung", "Einkauf", "Vertragsmanagement",
           "Leitung IT-Infrastruktur", "Sekretariat", "Controlling", "Qualitätsmanagement", "Kanzleileitung",
           "Systembetreuung"),
    "en": ("IT Operations", "Head of Finance", "Legal Counsel", "Digital Workplace Lead", "Procurement",
           "Office Manager", "Contracts Administrator", "Systems Engineer", "HR Services",
           "Company Secretary", "Compliance Officer", "Service Delivery Manager"),
}
ROLE_MAILBOXES = {
    "de": (("it-service", "IT-Service"), ("buchhaltung", "Buchhaltung"), ("office", "Office"),
           ("einkauf", "Einkauf"), ("edv", "EDV-Abteilung"), ("sekretariat", "Sekretariat")),
    "en": (("itsupport", "IT Support"), ("accounts.payable", "Accounts Payable"), ("office", "Office"),
           ("procurement", "Procurement"), ("it-helpdesk", "IT Helpdesk")),
}
# Letters a mail administrator spells out in ASCII for the local part.
_ASCII = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue",
                        "ø": "oe", "Ø": "Oe", "æ": "ae", "þ": "th", "Þ": "Th", "ð": "d", "ş": "s"})


def local_part(text: str) -> str:
    """``Weißenböck`` -> ``weissenboeck``, ``Ó Briain`` -> ``obriain``."""
    text = unicodedata.normalize("NFKD", text.translate(_ASCII))
    return "".join(ch for ch in text if ch.isascii() and (ch.isalnum() or ch == "-")).lower()


def _phone(rng: random.Random, company: Company) -> str:
    prefix = _PHONE_PREFIX[company.country]
    if company.lang == "de":
        return f"{prefix} {rng.randint(1, 9)}{rng.randint(10, 999)} {rng.randint(10000, 999999)}"
    return f"{prefix} {rng.randint(10, 99)} {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}"


def make_people(rng: random.Random, n: int = 200,
                extra_clients: bool = False) -> tuple[list[Person], list[float]]:
    """``n`` people over the companies, and a weight per person for who
    writes a new request: company weights fall off like a Zipf law, so a few
    customers write most of the mail. Every company has at least two
    people, so any reporter has a colleague. ``extra_clients``: some
    companies use Zimbra or Horde (see clients.EXTRA_CLIENTS)."""
    companies = list(COMPANIES)
    rng.shuffle(companies)  # which companies are the busy ones depends on the seed
    company_weight = {c.domain: 1.0 / (rank + 1) ** 0.75 for rank, c in enumerate(companies)}
    choices = COMPANY_CLIENTS + EXTRA_COMPANY_CLIENTS if extra_clients else COMPANY_CLIENTS
    company_client = {c.domain: weighted(rng, choices) for c in companies}
    slots = [c for c in companies for _ in range(2)]
    company_weights = [company_weight[c.domain] for c in companies]
    slots += rng.choices(companies, weights=company_weights, k=max(0, n - len(slots)))
    people: list[Person] = []
    taken: set[str] = set()
    for company in slots:
        person = _person(rng, company, company_client[company.domain], taken)
        taken.add(person.addr)
        people.append(person)
    # A company's share of new requests follows its weight; within it, some
    # colleagues write far more than others.
    staff = {d: sum(1 for p in people if p.domain == d) for d in company_weight}
    weights = [company_weight[p.domain] / staff[p.domain] * rng.choice((0.3, 0.6, 1.0, 1.0, 2.0, 3.5))
               for p in people]
    return people, weights


def _person(rng: random.Random, company: Company, company_client: str, taken: set[str]) -> Person:
    client = company_client if rng.random() < 0.8 else weighted(rng, PERSONAL_CLIENTS)
    mailers = (CLIENTS.get(client) or EXTRA_CLIENTS[client]).mailers
    mailer = rng.choice(mailers) if mailers else None
    phone = _phone(rng, company)
    for _ in range(100):
        if rng.random() < 0.05:
            local, label = rng.choice(ROLE_MAILBOXES[company.lang])
            addr = f"{local}@{company.domain}"
            if addr in taken:
                continue
            name = f"{label} {company.name}" if rng.random() < 0.5 else label
            return Person(name, addr, company, company.lang, client, mailer, "", phone, role=True)
        # a German-language company has some English-writing staff, and vice versa
        lang = company.lang if rng.random() < 0.88 else ("en" if company.lang == "de" else "de")
        first, last = rng.choice(FIRST_NAMES[lang]), rng.choice(LAST_NAMES[lang])
        f, la = local_part(first), local_part(last)
        local = rng.choice((f"{f}.{la}", f"{f}.{la}", f"{f}.{la}", f"{f[0]}.{la}", f"{la}", f"{f}{la[0]}",
                            f"{f}_{la}"))
        addr = f"{local}@{company.domain}"
        if addr in taken:
            continue
        return Person(f"{first} {last}", addr, company, lang, client, mailer, rng.choice(TITLES[lang]), phone)
    raise RuntimeError(f"no free address left at {company.domain}")
