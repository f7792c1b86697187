"""What the mail says and how it looks: MOXIS support topics in German and
English, greetings, signatures, disclaimers, follow-ups, out-of-office and
bounce texts; the quote of the previous mail in the reply style of each
client (Outlook DE/EN, Outlook for Mac, Gmail, Thunderbird, Apple Mail,
iPhone, Roundcube, Notes; behind a flag Zimbra, classic Notes and Horde);
and the HTML version of a body.

The texts avoid what the gateway must only ever see in quoted history
(" wrote:", " schrieb ", "Original Message", lines starting with ">"), so a
test can tell a leaked quote from the author's own words."""

from __future__ import annotations

import datetime as dt
import html
import random
import re
from dataclasses import dataclass, field

DESK_ADDR = "servicedesk@xitrust.com"

# --------------------------------------------------------------------------
# topics
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Topic:
    key: str
    subjects: dict[str, tuple[str, ...]]
    problem: dict[str, tuple[str, ...]]  # the opening paragraph, one of these
    details: dict[str, tuple[str, ...]]  # further sentences, a few of these
    asks: dict[str, tuple[str, ...]]  # the closing request
    followups: dict[str, tuple[str, ...]]  # news a later reply in the thread adds, the issue still open
    resolved: dict[str, tuple[str, ...]]  # a later reply saying the issue is solved
    attachment: str  # the kind of file people attach on this topic: png, pdf or log


TOPICS: tuple[Topic, ...] = (
    Topic(
        "signing",
        {"de": ("Signatur schlägt fehl ({code})", "Fehler beim Signieren von {doc}",
                "MOXIS: Unterschrift nicht möglich", "Dringend: Signaturvorgang bricht ab"),
         "en": ("Signing fails with {code}", "Error when signing {doc}", "MOXIS: unable to sign",
                "Urgent: signature process aborts")},
        {"de": ("seit heute früh bricht bei uns jeder Signaturvorgang mit der Meldung \"{code}\" ab.",
                "beim Versuch, das Dokument {doc} zu unterschreiben, erscheint nach der PIN-Eingabe nur "
                "ein leeres Fenster und danach der Fehler {code}.",
                "unsere Geschäftsführung kann seit gestern Nachmittag keine Verträge mehr in MOXIS "
                "unterzeichnen - die Schaltfläche \"Signieren\" dreht sich endlos."),
         "en": ("since this morning every signing attempt fails with the message \"{code}\".",
                "when trying to sign {doc}, an empty window appears after the PIN entry, followed by "
                "error {code}.",
                "our managing director has been unable to sign contracts in MOXIS since yesterday "
                "afternoon - the \"Sign\" button just keeps spinning.")},
        {"de": ("Betroffen sind laut unserer Auswertung {n} Dokumente.",
                "Wir setzen MOXIS in Version {ver} ein, am System wurde zuletzt nichts geändert.",
                "Der Fehler tritt sowohl in {browser} als auch in der Desktop-App auf.",
                "Einfache Signaturen funktionieren, nur qualifizierte Signaturen schlagen fehl.",
                "Ein Neustart des Rechners hat leider nichts gebracht."),
         "en": ("According to our count {n} documents are affected.",
                "We are on MOXIS {ver}; nothing was changed on the system recently.",
                "The error occurs in {browser} as well as in the desktop app.",
                "Simple signatures work, only qualified signatures fail.",
                "Restarting the PC did not help, unfortunately.")},
        {"de": ("Bitte um rasche Prüfung, da heute noch Fristen einzuhalten sind.",
                "Können Sie uns sagen, woran das liegen kann?",
                "Für einen kurzen Rückruf wäre ich dankbar."),
         "en": ("Please look into this quickly, we have deadlines today.",
                "Can you tell us what might be causing this?",
                "A quick call back would be much appreciated.")},
        {"de": ("Der Fehler ist heute wieder aufgetreten, diesmal bei {doc}.",
                "Mit dem Browser {browser} klappt es inzwischen, in der App weiterhin nicht.",
                "Wir haben den Cache geleert und es erneut probiert - leider ohne Erfolg."),
         "en": ("The error came back today, this time with {doc}.",
                "It works in {browser} now, but the app still fails.",
                "We cleared the cache and tried again - no luck.")},
        {"de": ("Nach dem Neustart des Signaturdienstes funktioniert es wieder, danke!",),
         "en": ("After restarting the signing service it works again, thanks!",)},
        "png",
    ),
    Topic(
        "certificate",
        {"de": ("Zertifikat läuft am {date} ab", "Verlängerung qualifiziertes Zertifikat {user}",
                "Frage zur Zertifikatserneuerung", "Zertifikat wird als ungültig angezeigt"),
         "en": ("Certificate expires on {date}", "Renewal of qualified certificate for {user}",
                "Question about certificate renewal", "Certificate shown as invalid")},
        {"de": ("das qualifizierte Zertifikat von {user} läuft laut Portal am {date} ab.",
                "in der Benutzerverwaltung wird das Zertifikat von {user} plötzlich als \"ungültig\" "
                "markiert, obwohl es erst im Herbst abläuft."),
         "en": ("according to the portal, the qualified certificate of {user} expires on {date}.",
                "the user administration suddenly marks the certificate of {user} as \"invalid\", although "
                "it only expires in the autumn.")},
        {"de": ("Muss die Identifizierung erneut durchgeführt werden?",
                "Die Verlängerung haben wir bereits am {since} beantragt.",
                "Bis zur Erneuerung müssen {n} Freigaben warten.",
                "Im Prüfprotokoll steht der Hinweis \"Zertifikatskette unvollständig\"."),
         "en": ("Does the identification have to be repeated?",
                "We already requested the renewal on {since}.",
                "{n} approvals are on hold until the renewal.",
                "The audit report says \"certificate chain incomplete\".")},
        {"de": ("Wie ist hier die Vorgehensweise?", "Bitte um kurze Rückmeldung, was wir tun müssen."),
         "en": ("What is the procedure here?", "Please let us know what we need to do.")},
        {"de": ("Die Identifizierung ist inzwischen erledigt.",
                "Das neue Zertifikat wird im Portal noch nicht angezeigt."),
         "en": ("The identification has been completed in the meantime.",
                "The new certificate does not show up in the portal yet.")},
        {"de": ("Das neue Zertifikat ist jetzt aktiv, vielen Dank für die Unterstützung.",),
         "en": ("The new certificate is active now, thanks for your help.",)},
        "pdf",
    ),
    Topic(
        "login",
        {"de": ("Login nicht möglich", "Passwort zurücksetzen für {user}", "Benutzerkonto gesperrt",
                "Zwei-Faktor-Code kommt nicht an"),
         "en": ("Unable to log in", "Password reset for {user}", "User account locked",
                "Two-factor code not arriving")},
        {"de": ("{user} kann sich seit heute Morgen nicht mehr bei MOXIS anmelden, die Meldung lautet "
                "\"Benutzer gesperrt\".",
                "nach mehreren Fehlversuchen ist mein Konto gesperrt und der Link zum Zurücksetzen des "
                "Passworts führt auf eine Fehlerseite.",
                "der Bestätigungscode für die Zwei-Faktor-Anmeldung kommt bei mir nicht mehr an."),
         "en": ("{user} has not been able to log in to MOXIS since this morning; the message says "
                "\"user locked\".",
                "after several failed attempts my account is locked, and the password reset link leads to "
                "an error page.",
                "the confirmation code for two-factor login no longer reaches me.")},
        {"de": ("Die Handynummer im Profil ist korrekt hinterlegt.",
                "Wir haben es mit {browser} und im privaten Fenster probiert.",
                "Der Zugang wird dringend für die Freigabe der Lohnverrechnung benötigt."),
         "en": ("The mobile number in the profile is correct.",
                "We tried {browser} and a private window.",
                "The account is urgently needed to approve this month's payroll.")},
        {"de": ("Bitte entsperren Sie den Zugang.", "Können Sie das Passwort bitte zurücksetzen?"),
         "en": ("Please unlock the account.", "Could you please reset the password?")},
        {"de": ("Der Code kommt weiterhin nicht an.", "Jetzt ist auch {user} gesperrt."),
         "en": ("The code still does not arrive.", "Now {user} is locked out as well.")},
        {"de": ("Die Anmeldung funktioniert wieder, danke.",), "en": ("Logging in works again, thanks.",)},
        "png",
    ),
    Topic(
        "invoice",
        {"de": ("Rechnung {inv} - Rückfrage", "Lizenzverlängerung {year}", "Angebot für {n} weitere Lizenzen",
                "Falsche Rechnungsadresse auf {inv}"),
         "en": ("Invoice {inv} - query", "Licence renewal {year}", "Quote for {n} additional licences",
                "Wrong billing address on {inv}")},
        {"de": ("zur Rechnung {inv} über {amount} haben wir eine Rückfrage: die Anzahl der Lizenzen stimmt "
                "nicht mit unserem Vertrag überein.",
                "für das kommende Jahr benötigen wir voraussichtlich {n} zusätzliche Benutzerlizenzen.",
                "auf der Rechnung {inv} ist noch unsere alte Anschrift angeführt, bitte um Korrektur."),
         "en": ("we have a query about invoice {inv} for {amount}: the number of licences does not match "
                "our contract.",
                "for next year we expect to need {n} additional user licences.",
                "invoice {inv} still shows our old address, please correct it.")},
        {"de": ("Laut Vertrag sind {n} Benutzer lizenziert.",
                "Die Bestellnummer für unsere Buchhaltung lautet PO-{n}{year}.",
                "Bitte die UID-Nummer auf der Rechnung ergänzen.",
                "Zahlungsziel wäre für uns wie bisher 30 Tage netto."),
         "en": ("Our contract covers {n} users.",
                "The purchase order number for our accounts team is PO-{n}{year}.",
                "Please add our VAT number to the invoice.",
                "Payment terms would be 30 days net as before.")},
        {"de": ("Bitte um Prüfung und ggf. Gutschrift.", "Können Sie uns ein Angebot schicken?"),
         "en": ("Please check and issue a credit note if appropriate.", "Could you send us a quote?")},
        {"de": ("Die Gutschrift ist bei uns noch nicht eingegangen.",
                "Unsere Buchhaltung benötigt die Rechnung zusätzlich im Format ebInterface."),
         "en": ("We have not received the credit note yet.",
                "Our accounts team also needs the invoice as XML.")},
        {"de": ("Die korrigierte Rechnung haben wir erhalten, vielen Dank.",),
         "en": ("We received the corrected invoice, many thanks.",)},
        "pdf",
    ),
    Topic(
        "sso",
        {"de": ("SSO mit Entra ID funktioniert nicht", "SAML-Anmeldung: Fehler {code}",
                "Frage zur ADFS-Anbindung"),
         "en": ("SSO with Entra ID not working", "SAML login: error {code}",
                "Question about ADFS integration")},
        {"de": ("wir stellen gerade auf Single Sign-on um; nach der Weiterleitung vom Identity Provider "
                "erhalten wir den Fehler {code}.",
                "seit dem Tausch des Signaturzertifikats in unserem ADFS schlägt die SAML-Anmeldung fehl."),
         "en": ("we are switching to single sign-on; after the redirect from the identity provider we get "
                "error {code}.",
                "since we replaced the signing certificate in our ADFS, SAML login fails.")},
        {"de": ("Die Metadaten wurden laut Anleitung hochgeladen, die Serverzeit ist synchron.",
                "Im Log erscheint \"InResponseTo mismatch\".",
                "Unser Mandant heißt {tenant}.",
                "Benutzer ohne SSO können sich weiterhin normal anmelden."),
         "en": ("We uploaded the metadata as described in the guide; server clocks are in sync.",
                "The log shows \"InResponseTo mismatch\".",
                "Our tenant is called {tenant}.",
                "Users without SSO can still log in normally.")},
        {"de": ("Gibt es bekannte Probleme mit Version {ver}?",
                "Könnten wir dazu einen kurzen Termin vereinbaren?"),
         "en": ("Are there known issues with version {ver}?", "Could we arrange a short call about this?")},
        {"de": ("Unser Identity-Team hat die Claims angepasst, der Fehler bleibt.",
                "Der Fehler tritt nur bei Benutzern aus der Gruppe \"Extern\" auf."),
         "en": ("Our identity team adjusted the claims, the error remains.",
                "The error only affects users in the \"External\" group.")},
        {"de": ("Mit dem neuen Zertifikat klappt die Anmeldung jetzt.",),
         "en": ("With the new certificate, login works now.",)},
        "log",
    ),
    Topic(
        "upload",
        {"de": ("Upload großer PDF-Dateien bricht ab", "PDF/A-Konvertierung schlägt fehl",
                "Dokument {doc} wird nicht angezeigt"),
         "en": ("Upload of large PDF files aborts", "PDF/A conversion fails",
                "Document {doc} is not displayed")},
        {"de": ("beim Hochladen von PDF-Dateien über {size} MB bricht der Upload nach etwa einer Minute ab.",
                "das Dokument {doc} wird nach dem Hochladen nur als graue Fläche angezeigt.",
                "die automatische PDF/A-Konvertierung meldet bei eingescannten Verträgen \"{code}\"."),
         "en": ("uploading PDF files larger than {size} MB aborts after about a minute.",
                "document {doc} only shows up as a grey area after uploading.",
                "the automatic PDF/A conversion reports \"{code}\" for scanned contracts.")},
        {"de": ("Kleinere Dateien funktionieren problemlos.",
                "Die Datei lässt sich im Acrobat Reader ganz normal öffnen.",
                "Es handelt sich um Scans mit ca. {n} Seiten.",
                "Formularfelder im PDF gehen beim Hochladen verloren."),
         "en": ("Smaller files work fine.", "The file opens normally in Acrobat Reader.",
                "These are scans of about {n} pages.", "Form fields in the PDF are lost on upload.")},
        {"de": ("Gibt es eine Größenbeschränkung, die wir anpassen können?", "Was können wir tun?"),
         "en": ("Is there a size limit we can adjust?", "What can we do?")},
        {"de": ("Auch nach dem Update tritt es noch auf.", "Mit Firefox dasselbe Verhalten."),
         "en": ("It still happens after the update.", "Same behaviour in Firefox.")},
        {"de": ("Mit einer verkleinerten Datei hat es funktioniert, danke für den Tipp.",),
         "en": ("It worked with a reduced file, thanks for the tip.",)},
        "pdf",
    ),
    Topic(
        "api",
        {"de": ("Frage zur REST-API", "API-Token ungültig (HTTP 401)", "Webhook wird nicht ausgelöst",
                "HTTP 429 bei Massenversand"),
         "en": ("Question about the REST API", "API token invalid (HTTP 401)", "Webhook is not triggered",
                "HTTP 429 during bulk sending")},
        {"de": ("wir binden MOXIS gerade an unser DMS an; der Aufruf von /api/v3/envelopes liefert HTTP 401, "
                "obwohl das Token gültig ist.",
                "der Webhook für abgeschlossene Umläufe wird seit dem {since} nicht mehr ausgelöst.",
                "beim Anlegen von mehr als {n} Umläufen pro Minute bekommen wir HTTP 429 zurück."),
         "en": ("we are connecting MOXIS to our DMS; calling /api/v3/envelopes returns HTTP 401 although the "
                "token is valid.",
                "the webhook for completed workflows has not fired since {since}.",
                "when creating more than {n} workflows per minute we get HTTP 429.")},
        {"de": ("Das Token hat die Rolle \"Integration\".",
                "Unsere Callback-URL ist von außen erreichbar, ein Test mit curl klappt.",
                "Die Request-ID aus dem Header lautet {code}.",
                "Wir verwenden den OAuth-Client-Credentials-Flow."),
         "en": ("The token has the \"integration\" role.",
                "Our callback URL is reachable from outside; a test with curl works.",
                "The request id from the header is {code}.",
                "We use the OAuth client credentials flow.")},
        {"de": ("Welche Berechtigungen sind zusätzlich nötig?",
                "Gibt es dafür ein Limit, das Sie erhöhen können?"),
         "en": ("Which additional permissions are required?", "Is there a limit you can raise for us?")},
        {"de": ("Der Webhook bleibt weiterhin aus.", "Auch mit einem neu erzeugten Token kommt HTTP 401."),
         "en": ("The webhook still does not fire.", "A newly created token gets HTTP 401 as well.")},
        {"de": ("Mit dem neuen Scope funktioniert der Aufruf.",),
         "en": ("The call works with the new scope.",)},
        "log",
    ),
    Topic(
        "feature",
        {"de": ("Wunsch: Stellvertretung bei Abwesenheit", "Verbesserungsvorschlag Freigabe-Workflow",
                "Erinnerungsmails anpassen?", "Serienunterschrift für mehrere Dokumente"),
         "en": ("Feature request: delegation during absence", "Suggestion for the approval workflow",
                "Customising reminder e-mails?", "Batch signing of several documents")},
        {"de": ("es wäre schön, wenn man für Urlaubszeiten eine Stellvertretung hinterlegen könnte, die "
                "Dokumente weiter signieren darf.",
                "unsere Vorstände würden gerne mehrere Dokumente in einem Schritt unterschreiben.",
                "können die Texte der Erinnerungsmails an unsere Corporate Identity angepasst werden?"),
         "en": ("it would be great to define a deputy for holidays who may keep signing documents.",
                "our board members would like to sign several documents in one step.",
                "can the text of the reminder e-mails be adapted to our corporate identity?")},
        {"de": ("Derzeit hängen wir die Workflows bei {n} offenen Vorgängen händisch um.",
                "Andere Abteilungen haben denselben Wunsch geäußert.",
                "Gerne stehen wir auch für einen Testlauf zur Verfügung."),
         "en": ("Today we re-assign workflows by hand, with {n} open items.",
                "Other departments have asked for the same.", "We would be happy to take part in a trial.")},
        {"de": ("Ist so etwas geplant?", "Wie sieht es damit auf der Roadmap aus?"),
         "en": ("Is something like this planned?", "Is this on the roadmap?")},
        {"de": ("Gibt es dazu schon einen Zeitplan?", "Auch unsere Tochtergesellschaft wäre interessiert."),
         "en": ("Is there a timeline yet?", "Our subsidiary would be interested as well.")},
        {"de": ("Danke für die Info zur Version {ver}, dann warten wir darauf.",),
         "en": ("Thanks for the information about version {ver}, we will wait for it.",)},
        "png",
    ),
    Topic(
        "update",
        {"de": ("Update auf Version {ver} - Vorgehensweise", "Wartungsfenster am {date}",
                "Nach Update: Startseite lädt nicht"),
         "en": ("Upgrade to version {ver} - procedure", "Maintenance window on {date}",
                "After upgrade: start page does not load")},
        {"de": ("wir planen das Update unserer On-Premises-Installation auf Version {ver} am {date}.",
                "seit dem Update auf {ver} lädt die Startseite nur noch bis 90 % und bleibt dann hängen."),
         "en": ("we are planning to upgrade our on-premises installation to version {ver} on {date}.",
                "since the upgrade to {ver} the start page loads to 90 % and then hangs.")},
        {"de": ("Gibt es Breaking Changes, die wir beachten müssen?",
                "Die Datenbank haben wir vorher gesichert.",
                "Im Server-Log sehen wir wiederholt {code}.",
                "Das Wartungsfenster wäre zwischen 18 und 22 Uhr."),
         "en": ("Are there breaking changes we should be aware of?", "We backed up the database beforehand.",
                "The server log repeatedly shows {code}.", "The maintenance window would be 6 to 10 pm.")},
        {"de": ("Bitte um kurze Bestätigung.", "Können Sie sich das bitte ansehen?"),
         "en": ("Please confirm briefly.", "Could you please take a look?")},
        {"de": ("Wir haben das Update vorerst zurückgerollt.", "Der Fehler {code} steht weiterhin im Log."),
         "en": ("We rolled the upgrade back for now.", "Error {code} is still in the log.")},
        {"de": ("Das Update ist durch, bisher keine Auffälligkeiten.",),
         "en": ("The upgrade is done, no issues so far.",)},
        "log",
    ),
    Topic(
        "workflow",
        {"de": ("Externe Unterzeichner erhalten keine Einladung", "Umlauf {doc} hängt",
                "Reihenfolge der Unterzeichner ändern"),
         "en": ("External signers do not receive the invitation", "Workflow {doc} is stuck",
                "Changing the order of signers")},
        {"de": ("externe Unterzeichner erhalten seit {since} keine Einladungsmail mehr.",
                "der Umlauf {doc} steht seit drei Tagen auf \"in Bearbeitung\", obwohl alle unterschrieben "
                "haben.",
                "kann man bei einem laufenden Umlauf die Reihenfolge der Unterzeichner noch ändern?"),
         "en": ("external signers have not received an invitation e-mail since {since}.",
                "workflow {doc} has been \"in progress\" for three days although everyone has signed.",
                "is it possible to change the order of signers in a running workflow?")},
        {"de": ("Im Spam-Ordner der Empfänger ist nichts zu finden.",
                "Interne Benutzer bekommen die Mails ganz normal.",
                "Es betrifft {n} Verträge mit einem Gesamtvolumen von {amount}."),
         "en": ("Nothing in the recipients' spam folders.", "Internal users get the e-mails as usual.",
                "It concerns {n} contracts worth {amount} in total.")},
        {"de": ("Was können wir tun?", "Bitte um Hilfe."),
         "en": ("What can we do?", "Please help.")},
        {"de": ("Die Einladungen kommen weiterhin nicht an.", "Betroffen ist jetzt auch {doc}."),
         "en": ("The invitations still do not arrive.", "{doc} is affected now as well.")},
        {"de": ("Der Umlauf ist jetzt abgeschlossen.",), "en": ("The workflow has completed now.",)},
        "png",
    ),
    Topic(
        "validation",
        {"de": ("Adobe zeigt Signatur als ungültig", "Prüfprotokoll fehlt im Dokument",
                "Validierung signierter PDFs"),
         "en": ("Adobe shows the signature as invalid", "Audit trail missing from the document",
                "Validating signed PDFs")},
        {"de": ("unsere Vertragspartner melden, dass Adobe Acrobat die Signatur in {doc} als \"ungültig\" "
                "anzeigt.",
                "beim Herunterladen von {doc} fehlt das Prüfprotokoll am Ende des Dokuments."),
         "en": ("our contract partners report that Adobe Acrobat shows the signature in {doc} as "
                "\"invalid\".",
                "when downloading {doc}, the audit trail at the end of the document is missing.")},
        {"de": ("Im Validierungsdienst der RTR ist die Signatur gültig.",
                "Der Zeitstempel zeigt {time} Uhr.",
                "Das betrifft nur Dokumente seit dem {since}."),
         "en": ("The EU DSS validation service says the signature is valid.",
                "The timestamp shows {time}.", "It only affects documents since {since}.")},
        {"de": ("Wie können wir das gegenüber unseren Partnern erklären?", "Bitte um Prüfung."),
         "en": ("How can we explain this to our partners?", "Please check.")},
        {"de": ("Das Problem besteht weiterhin.", "Auch ein zweiter Vertragspartner meldet dasselbe."),
         "en": ("The problem persists.", "A second partner reports the same.")},
        {"de": ("Die Vertrauensliste in Adobe war veraltet, jetzt passt es.",),
         "en": ("The trust list in Adobe was outdated, it is fine now.",)},
        "pdf",
    ),
    Topic(
        "users",
        {"de": ("Neue Benutzer anlegen", "Benutzer {user} deaktivieren", "Rollen für Abteilung Einkauf"),
         "en": ("Creating new users", "Deactivate user {user}", "Roles for the purchasing department")},
        {"de": ("bitte legen Sie für unsere neue Kollegin {user} einen Benutzer mit der Rolle "
                "\"Unterzeichner\" an.",
                "{user} hat das Unternehmen verlassen; bitte deaktivieren Sie den Zugang zum {date}.",
                "die Abteilung Einkauf soll künftig Umläufe starten, aber nicht selbst signieren dürfen."),
         "en": ("please create a user with the \"signer\" role for our new colleague {user}.",
                "{user} has left the company; please deactivate the account as of {date}.",
                "the purchasing department should be able to start workflows but not sign themselves.")},
        {"de": ("Die Kostenstelle ist {n}.", "Die Freigabe durch die Geschäftsführung liegt vor.",
                "Offene Umläufe sollen an {user} übergehen."),
         "en": ("The cost centre is {n}.", "Management approval has been given.",
                "Open workflows should move to {user}.")},
        {"de": ("Danke im Voraus!", "Geht das über die Oberfläche oder nur durch Sie?"),
         "en": ("Thanks in advance!", "Can we do this in the admin UI or only you?")},
        {"de": ("Die Rolle fehlt noch.", "Bitte zusätzlich die Rolle \"Administrator\" vergeben."),
         "en": ("The role is still missing.", "Please also assign the \"administrator\" role.")},
        {"de": ("Der Benutzer ist angelegt, danke.",), "en": ("The user has been created, thanks.",)},
        "pdf",
    ),
)

# error codes people quote, by topic
_CODES = {
    "signing": ("SIG-4107", "E-2203", "TSP_TIMEOUT", "HSM_UNAVAILABLE", "0x8009030E"),
    "sso": ("SAML2_INVALID_AUDIENCE", "AUTH-0031", "AADSTS50011"),
    "upload": ("PDF-0417", "PDFA_CONVERSION_FAILED"),
    "update": ("E-5120", "HTTP 502", "Liquibase lock timeout"),
    "api": ("req-7f3a9c2e", "req-0b81d4aa", "req-c5e2f019"),
}
_DEFAULT_CODES = ("E-2203", "HTTP 500", "CERT_CHAIN_INCOMPLETE")
_VERSIONS = ("7.9.4", "8.0.2", "8.1.0", "8.1.3", "8.2.1")
_BROWSERS = ("Edge", "Chrome", "Firefox", "Safari")
_DOCS = ("Rahmenvertrag_2024.pdf", "Dienstvertrag Gößl.pdf", "NDA-Kestrel.pdf",
         "Kaufvertrag Grundstück 17.pdf",
         "Bescheid_{n}.pdf", "Mietvertrag Büro Süd.pdf", "Purchase Agreement v3.pdf", "Angebot {n}-B.pdf")

# --------------------------------------------------------------------------
# phrases
# --------------------------------------------------------------------------
GREETINGS = {
    "de": ("Sehr geehrte Damen und Herren,", "Hallo zusammen,", "Guten Morgen,", "Liebes MOXIS-Team,",
           "Hallo liebes Support-Team,", "Guten Tag,", "Hallo,"),
    "en": ("Hello,", "Hi there,", "Dear Support Team,", "Good morning,", "Hi all,", "Dear XiTrust team,"),
}
_REGIONAL_GREETINGS = {"AT": ("Grüß Gott,", "Servus,"), "CH": ("Grüezi,", "Grüezi mitenand,"),
                       "IT": ("Guten Tag,",), "IE": ("Hi folks,",), "GB": ("Morning,",)}
CLOSINGS = {
    "de": ("Mit freundlichen Grüßen", "Freundliche Grüße", "Beste Grüße", "Liebe Grüße", "Viele Grüße",
           "Danke und Gruß", "Schöne Grüße aus {city}"),
    "en": ("Kind regards,", "Many thanks,", "Best wishes,", "Regards,", "Thanks in advance,",
           "All the best,"),
}
# Swiss German has no ß.
_SWISS_CLOSINGS = ("Freundliche Grüsse", "Beste Grüsse", "Liebe Grüsse")
DISCLAIMERS = {
    "de": ("Diese Nachricht ist ausschließlich für den bezeichneten Adressaten bestimmt und kann "
           "vertrauliche Informationen enthalten. Sollten Sie nicht der vorgesehene Empfänger sein, "
           "verständigen Sie bitte den Absender und löschen Sie diese E-Mail.",
           "Sitz: {city}, {register}. Bitte denken Sie an die Umwelt, bevor Sie diese E-Mail ausdrucken."),
    "en": ("This message is intended only for the addressee and may contain confidential information. If "
           "you received it by mistake, please let the sender know and delete it.",
           "Registered office: {city}, {register}. Please consider the environment before printing this "
           "e-mail."),
}
# the company register entry a legal footer names
_REGISTERS = {"AT": "FN {n}x", "DE": "HRB {n}", "CH": "CHE-{n}.{m}", "IT": "REA BZ-{n}",
              "GB": "company no. 0{n}", "IE": "CRO {n}", "NL": "KvK {n}", "EE": "registry code 1{n}",
              "NO": "org. nr. 9{n}", "MT": "C {n}", "DK": "CVR {n}"}
# What a later reply says besides the topic's news.
CHASERS = {
    "de": ("gibt es zu meiner Anfrage schon Neuigkeiten?",
           "darf ich freundlich an mein Anliegen erinnern? Die Sache wird bei uns langsam dringend.",
           "wir haben bisher keine Rückmeldung erhalten – können Sie mir einen Zwischenstand geben?",
           "bitte rufen Sie mich kurz unter {phone} an, dann kann ich es Ihnen am Bildschirm zeigen."),
    "en": ("is there any news on my request?",
           "may I follow up on this? It is getting urgent for us.",
           "we have not heard back yet - could you give me a status update?",
           "please give me a quick call on {phone} and I will show you on screen."),
}
ADDENDA = {  # followed by the news, in the same paragraph
    "de": ("noch eine Ergänzung zu meiner Nachricht von vorhin:", "kurzer Nachtrag:", "zur Info:"),
    "en": ("one more thing regarding my earlier message:", "quick addition:", "FYI:"),
}
RESOLVED = {
    "de": ("das Problem hat sich erledigt, bitte nicht mehr weiter verfolgen. Danke!",
           "Sie können die Anfrage schließen, es läuft wieder."),
    "en": ("this has sorted itself out, no need to investigate further. Thanks!",
           "you can close this one, it works again."),
}
COLLEAGUE_INTROS = {
    "de": ("ich melde mich in Vertretung für {reporter}, diese Woche auf Urlaub.",
           "ich übernehme das Thema von {reporter}.",
           "eine Ergänzung aus unserer IT zur Anfrage von {reporter}:"),
    "en": ("I am writing on behalf of {reporter}, who is out of the office this week.",
           "I am taking this over from {reporter}.",
           "an addition from our IT team to {reporter}'s request:"),
}
ATTACHMENT_NOTES = {
    "png": {"de": "Einen Screenshot der Fehlermeldung habe ich angehängt.",
            "en": "I have attached a screenshot of the error."},
    "pdf": {"de": "Das Dokument finden Sie im Anhang.", "en": "Please find the document attached."},
    "log": {"de": "Den Auszug aus dem Server-Log hänge ich an.",
            "en": "I attached an excerpt of the server log."},
}
FIELDS_BLOCK = {  # some customers fill in the desk's request form at the top
    "de": ("Priorität: {prio}", "MOXIS Domäne: moxis.{domain}", "Browser: {browser}"),
    "en": ("Priority: {prio}", "MOXIS domain: moxis.{domain}", "Browser: {browser}"),
}
_PRIORITIES = {"de": ("hoch", "mittel", "kritisch", "niedrig"), "en": ("high", "medium", "critical", "low")}
MOBILE_TRAILERS = {"de": "Von meinem iPhone gesendet", "en": "Sent from my iPhone"}
# Body lines that begin with "From " (mbox escaping), said the way people say it.
FROM_LINES = {"de": ("From Server-Log (Auszug, {time} Uhr):",),
              "en": ("From our side nothing was changed.", "From the server log at {time}:")}

# --------------------------------------------------------------------------
# dates the way clients print them
# --------------------------------------------------------------------------
_WD_DE = ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag")
_WD_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MON_DE = ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
           "November", "Dezember")
_MON_EN = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")


# English names from tables, not strftime's %a/%b/%B: those follow LC_TIME,
# and the corpus must be the same bytes whatever the locale.
def wd(t: dt.datetime) -> str:
    return _WD_EN[t.weekday()][:3]


def mon(t: dt.datetime) -> str:
    return _MON_EN[t.month - 1][:3]


def month(t: dt.datetime) -> str:
    return _MON_EN[t.month - 1]


def _en_12h(t: dt.datetime) -> str:
    return f"{(t.hour - 1) % 12 + 1}:{t.minute:02d} {'AM' if t.hour < 12 else 'PM'}"


def long_date(t: dt.datetime, lang: str, us: bool = False) -> str:
    """Outlook's ``Gesendet:`` / ``Sent:`` date."""
    if lang == "de":
        return f"{_WD_DE[t.weekday()]}, {t.day}. {_MON_DE[t.month - 1]} {t.year} {t:%H:%M}"
    if us:
        return f"{_WD_EN[t.weekday()]}, {_MON_EN[t.month - 1]} {t.day}, {t.year} {_en_12h(t)}"
    return f"{_WD_EN[t.weekday()]}, {t.day} {_MON_EN[t.month - 1]} {t.year} {t:%H:%M}"


# --------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------
def fill(template: str, values: dict[str, str]) -> str:
    return template.format(**values) if "{" in template else template


def values_for(rng: random.Random, topic: str, lang: str, user: str, phone: str, city: str, domain: str,
               now: dt.datetime) -> dict[str, str]:
    """Placeholder values of one mail."""
    n = rng.randint(3, 240)
    amount = rng.randint(400, 48000) + rng.randint(0, 99) / 100
    if lang == "de":
        money = f"{amount:,.2f} €".replace(",", "_").replace(".", ",").replace("_", ".")
    else:
        money = rng.choice((f"€{amount:,.2f}", f"EUR {amount:,.2f}"))
    future = now + dt.timedelta(days=rng.randint(3, 70))
    past = now - dt.timedelta(days=rng.randint(1, 20))
    return {
        "code": rng.choice(_CODES.get(topic, _DEFAULT_CODES)), "ver": rng.choice(_VERSIONS),
        "browser": rng.choice(_BROWSERS),
        "doc": rng.choice(_DOCS).format(n=rng.randint(1000, 99999)), "n": str(n), "user": user,
        "date": f"{future:%d.%m.%Y}" if lang == "de" else f"{future.day} {month(future)} {future.year}",
        "since": f"{past:%d.%m.%Y}" if lang == "de" else f"{past.day} {month(past)}",
        "inv": f"RE{now.year}-{rng.randint(100, 9999):04d}", "amount": money, "year": str(now.year + 1),
        "size": str(rng.choice((15, 20, 30, 50))), "tenant": domain.split(".")[0], "phone": phone,
        "time": f"{rng.randint(6, 18):02d}:{rng.randint(0, 59):02d}", "city": city.split(" ", 1)[-1],
        "domain": domain, "prio": rng.choice(_PRIORITIES[lang]),
    }


def typographic(text: str, lang: str) -> str:
    """What Outlook/Apple autocorrect make of straight quotes and dashes."""
    opening, closing = ("\u201e", "\u201c") if lang == "de" else ("\u201c", "\u201d")
    parts = text.split('"')
    out = [parts[0]]
    for i, part in enumerate(parts[1:]):
        out.append((opening if i % 2 == 0 else closing) + part)
    return "".join(out).replace(" - ", " \u2013 ")


def wrap(text: str, width: int = 74) -> list[str]:
    """Hard-wrap a paragraph as a plain-text client does."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines


def greeting(rng: random.Random, lang: str, country: str) -> str:
    regional = _REGIONAL_GREETINGS.get(country, ())
    if regional and rng.random() < 0.3:
        return rng.choice(regional)
    return rng.choice(GREETINGS[lang])


def closing(rng: random.Random, lang: str, country: str, city: str) -> str:
    if lang == "de" and country == "CH":
        return rng.choice(_SWISS_CLOSINGS)
    return rng.choice(CLOSINGS[lang]).format(city=city.split(" ", 1)[-1])


def signature(rng: random.Random, name: str, title: str, company: str, street: str, city: str, phone: str,
              domain: str, lang: str, country: str, full: bool) -> list[str]:
    """The lines under the closing formula: the name, and for a full
    signature the company block and sometimes a disclaimer."""
    lines = [name]
    if not full:
        return lines
    if title:
        lines.append(title)
    lines += ["", company, f"{street} | {city}"]
    ext = rng.randint(10, 89)
    lines.append(f"Tel.: {phone}-{ext}" if lang == "de" else f"T: {phone} ext. {ext}")
    lines.append(f"www.{domain}")
    if rng.random() < 0.3:
        register = _REGISTERS[country].format(n=rng.randint(100000, 999999), m=rng.randint(100, 999))
        footer = rng.choice(DISCLAIMERS[lang]).format(city=city.split(" ", 1)[-1], register=register)
        lines += ["", *wrap(footer, 90)]
    return lines


# --------------------------------------------------------------------------
# quoting the previous mail
# --------------------------------------------------------------------------
@dataclass
class Quoted:
    """The mail being answered, as the replying client shows it."""

    when: dt.datetime  # in the replier's time zone
    name: str
    addr: str
    subject: str
    text: str  # its plain text, its own quoted history included
    message_id: str
    cc: str | None = None


@dataclass
class Quote:
    style: str
    header: list[str]  # separator / header block / attribution, as plain lines
    lines: list[str]  # the quoted text, '>'-prefixed or not, as the style has it
    below: bool = False  # bottom-posting: the answer comes after the quote
    html_header: list[str] = field(default_factory=list)


QUOTE_STYLES = ("outlook_rule", "outlook_classic", "outlook_mac", "gmail", "thunderbird",
                "thunderbird_bottom", "apple", "iphone", "roundcube", "notes")
EXTRA_QUOTE_STYLES = ("notes_classic", "zimbra", "horde")  # Corpus(extra_styles=True), the default
MAX_QUOTED_LINES = 60  # clients quote everything; keep the corpus small


def _gt(lines: list[str]) -> list[str]:
    return [(">" + line if line.startswith(">") else "> " + line) if line else ">" for line in lines]


def _gmail_wrap(line: str, width: int = 76) -> list[str]:
    """Gmail hard-wraps a long attribution, often right after the '<'."""
    if len(line) <= width:
        return [line]
    cut = line.rfind("<", 0, width)
    cut = cut + 1 if cut > 20 else line.rfind(" ", 0, width)
    return [line[:cut].rstrip(), line[cut:].lstrip()]


_LABELS = {
    "de": {"from": "Von", "sent": "Gesendet", "to": "An", "subject": "Betreff", "date": "Datum"},
    "en": {"from": "From", "sent": "Sent", "to": "To", "subject": "Subject", "date": "Date"},
}


def make_quote(rng: random.Random, style: str, lang: str, q: Quoted) -> Quote:
    text_lines = q.text.split("\n")[:MAX_QUOTED_LINES]
    w = q.when
    de = lang == "de"
    lab = _LABELS[lang]
    if style in ("outlook_rule", "outlook_classic"):
        us = not de and rng.random() < 0.3
        sender = f"{q.name} <{q.addr}>" if rng.random() < 0.7 else f"{q.name} [mailto:{q.addr}]"
        desk = rng.choice((DESK_ADDR, f"XiTrust Servicedesk <{DESK_ADDR}>", f"'{DESK_ADDR}' <{DESK_ADDR}>"))
        block = [f"{lab['from']}: {sender}", f"{lab['sent']}: {long_date(w, lang, us)}",
                 f"{lab['to']}: {desk}"]
        if q.cc:
            block.append(f"Cc: {q.cc}")
        block.append(f"{lab['subject']}: {q.subject}")
        if style == "outlook_rule":
            sep = "_" * 32
        else:
            sep = "-----Ursprüngliche Nachricht-----" if de else "-----Original Message-----"
        return Quote(style, [sep, *block, ""], text_lines, html_header=block)
    if style == "outlook_mac":
        if de:
            date = f"{_WD_DE[w.weekday()]}, {w.day}. {_MON_DE[w.month - 1]} {w.year} um {w:%H:%M}"
        else:
            date = f"{_WD_EN[w.weekday()]}, {w.day} {_MON_EN[w.month - 1]} {w.year} at {w:%H:%M}"
        block = [f"{lab['from']}: {q.name} <{q.addr}>", f"{lab['date']}: {date}",
                 f"{lab['to']}: {DESK_ADDR} <{DESK_ADDR}>", f"{lab['subject']}: {q.subject}"]
        return Quote(style, [*block, ""], text_lines, html_header=block)
    if style == "notes":
        pad = " " * 8  # Notes aligns the values with spaces
        block = [f'{lab["from"]}:{pad}"{q.name}" <{q.addr}>', f"{lab['to']}:{pad}{DESK_ADDR}",
                 f"{lab['date']}:{pad}{w:%d.%m.%Y %H:%M}", f"{lab['subject']}:{pad}{q.subject}"]
        return Quote(style, ["", "", *block, "", ""], text_lines, html_header=block)
    if style == "gmail":
        who = f"{q.name} <{q.addr}>"
        if de:
            day = f"{_WD_DE[w.weekday()][:2]}., {w.day}. {_MON_DE[w.month - 1]} {w.year}"
            head = f"Am {day} um {w:%H:%M} Uhr schrieb {who}:"
        elif rng.random() < 0.5:
            head = f"On {wd(w)}, {w.day} {mon(w)} {w.year} at {w:%H:%M}, {who} wrote:"
        else:
            head = f"On {wd(w)}, {mon(w)} {w.day}, {w.year} at {_en_12h(w)} {who} wrote:"
        return Quote(style, [*_gmail_wrap(head), ""], [*_gt(text_lines), ""], html_header=[head])
    if style in ("thunderbird", "thunderbird_bottom"):
        if de:
            head = f"Am {w:%d.%m.%y} um {w:%H:%M} schrieb {q.name}:"
        else:
            head = f"On {w:%d/%m/%Y} {w:%H:%M}, {q.name} wrote:"
        return Quote(style, [head], _gt(text_lines), below=style == "thunderbird_bottom", html_header=[head])
    if style in ("apple", "iphone"):
        if de:
            head = f"Am {w:%d.%m.%Y} um {w:%H:%M} schrieb {q.name} <{q.addr}>:"
        else:
            head = f"On {w.day} {mon(w)} {w.year}, at {w:%H:%M}, {q.name} <{q.addr}> wrote:"
        return Quote(style, [], _gt([head, "", *text_lines]), html_header=[head])
    if style == "roundcube":
        if de:
            head = f"Am {w:%d.%m.%Y %H:%M}, schrieb {q.name}:"
        else:
            head = f"On {w:%Y-%m-%d %H:%M}, {q.name} wrote:"
        return Quote(style, [head], _gt(text_lines), html_header=[head])
    # the styles behind Corpus(extra_styles=True)
    if style == "notes_classic":  # the time after "schrieb am" has colons
        if de:
            head = f"{q.name} <{q.addr}> schrieb am {w:%d.%m.%Y %H:%M:%S}:"
        else:
            head = f"{q.name} <{q.addr}> wrote on {w:%m/%d/%Y %I:%M:%S} {'AM' if w.hour < 12 else 'PM'}:"
        return Quote(style, [head, ""], _gt(text_lines), html_header=[head])
    if style == "zimbra":
        sep = "----- Ursprüngliche Mail -----" if de else "----- Original Message -----"
        block = [f'{lab["from"]}: "{q.name}" <{q.addr}>', f'{lab["to"]}: "Servicedesk" <{DESK_ADDR}>',
                 f"{lab['sent']}: {long_date(w, lang)}:{w:%S}", f"{lab['subject']}: {q.subject}"]
        return Quote(style, [sep, *block, ""], text_lines, html_header=block)
    if style == "horde":
        head = f"Zitat von {q.name} <{q.addr}>:" if de else f"Quoting {q.name} <{q.addr}>:"
        return Quote(style, [head, ""], _gt(text_lines), html_header=[head])
    raise ValueError(f"unknown quote style {style}")


def plain_body(own: list[str], quote: Quote | None, sig: list[str], sig_dashes: bool) -> str:
    """The text/plain body: own text, signature, quote (or quote first, for
    bottom-posters)."""
    signature_lines = (["-- ", *sig] if sig_dashes else sig) if sig else []
    if quote is None:
        lines = [*own, *signature_lines]
    elif quote.below:
        lines = [*quote.header, *quote.lines, "", *own, *signature_lines]
    else:
        lines = [*own, *signature_lines, "", *quote.header, *quote.lines]
    return "\n".join(lines).rstrip("\n") + "\n"


# --------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------
def _e(text: str) -> str:
    return html.escape(text, quote=False)


def _nested(lines: list[str], open_tag: str, close_tag: str, line_tag: tuple[str, str]) -> str:
    """'>'-quoted plain lines as nested blockquotes."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        if lines[i].startswith(">"):
            j = i
            inner: list[str] = []
            while j < len(lines) and lines[j].startswith(">"):
                inner.append(re.sub(r"^> ?", "", lines[j]))
                j += 1
            out.append(open_tag + _nested(inner, open_tag, close_tag, line_tag) + close_tag)
            i = j
        else:
            if lines[i] or not line_tag[1].startswith("<br"):
                out.append(f"{line_tag[0]}{_e(lines[i]) or '<br>'}{line_tag[1]}")
            else:  # an empty line is one line break, not two
                out.append(line_tag[1])
            i += 1
    return "\n".join(out)


def _unquote(lines: list[str]) -> list[str]:
    return [re.sub(r"^> ?", "", line) for line in lines]


_OUTLOOK_HEAD = (
    '<html xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office" '
    'xmlns:w="urn:schemas-microsoft-com:office:word" xmlns="http://www.w3.org/TR/REC-html40">\n'
    '<head>\n<meta http-equiv="Content-Type" content="text/html; charset={charset}">\n'
    '<meta name="Generator" content="Microsoft Word 15 (filtered medium)">\n'
    '<style><!--\np.MsoNormal, li.MsoNormal, div.MsoNormal\n\t{{margin:0cm;\n\tfont-size:11.0pt;\n'
    '\tfont-family:"Calibri",sans-serif;}}\n--></style>\n</head>\n'
    '<body lang="{lang}" link="#0563C1" vlink="#954F72" style="word-wrap:break-word">\n'
    '<div class="WordSection1">\n'
)
_OUTLOOK_RULE = '<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm">'
_GMAIL_QUOTE = (
    '<blockquote class="gmail_quote" '
    'style="margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);padding-left:1ex">'
)
_APPLE_BODY = (
    '<body style="overflow-wrap: break-word; -webkit-nbsp-mode: space; line-break: after-white-space;">'
)
_ROUNDCUBE_QUOTE = (
    '<blockquote type="cite" style="padding: 0 0.4em; border-left: #1010ff 2px solid; margin: 0">'
)


def _mso(line: str) -> str:
    if not line:
        return '<p class="MsoNormal"><o:p>&nbsp;</o:p></p>'
    return f'<p class="MsoNormal">{_e(line)}<o:p></o:p></p>'


def _outlook_html(lang: str, charset: str, own: list[str], quote: Quote | None) -> str:
    quoted = ""
    if quote is not None:
        fields = (h.partition(":") for h in quote.html_header)
        head = "<br>\n".join(f"<b>{_e(k)}:</b>{_e(v)}" for k, _, v in fields)
        quoted = (f"\n{_OUTLOOK_RULE}\n<p class=\"MsoNormal\">{head}<o:p></o:p></p>\n</div>\n"
                  + "\n".join(_mso(line) for line in quote.lines))
    head = _OUTLOOK_HEAD.format(charset=charset, lang="DE-AT" if lang == "de" else "EN-GB")
    return head + "\n".join(_mso(line) for line in own) + quoted + "\n</div>\n</body>\n</html>\n"


def _gmail_html(own: list[str], quote: Quote | None) -> str:
    body = "".join(f"<div>{_e(line)}</div>" if line else "<div><br></div>" for line in own)
    quoted = ""
    if quote is not None:
        lines = _unquote([line for line in quote.lines if line != ""])
        quoted = ('<br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">'
                  f'{_e(" ".join(quote.html_header))}<br></div>{_GMAIL_QUOTE}'
                  + _nested(lines, "<blockquote>", "</blockquote>", ("", "<br>")) + "</blockquote></div>")
    return f'<div dir="ltr">{body}</div>{quoted}\n'


def _thunderbird_html(charset: str, own: list[str], sig: list[str], quote: Quote | None,
                      parent_mid: str) -> str:
    text = "<p>" + "<br>\n".join(_e(line) for line in own) + "</p>"
    signature = ""
    if sig:
        signature = '<div class="moz-signature">-- <br>' + "<br>\n".join(_e(x) for x in sig) + "</div>"
    quoted = ""
    if quote is not None:
        cited = _nested(_unquote(quote.lines), '<blockquote type="cite">', "</blockquote>", ("", "<br>"))
        quoted = (f'<div class="moz-cite-prefix">{_e(quote.html_header[0])}<br>\n</div>\n'
                  f'<blockquote type="cite" cite="mid:{_e(parent_mid.strip("<>"))}">\n'
                  f"{cited}\n</blockquote>\n")
    parts = [quoted, text, signature] if quote and quote.below else [text, signature, quoted]
    return ('<!DOCTYPE html>\n<html>\n  <head>\n    <meta http-equiv="Content-Type" '
            f'content="text/html; charset={charset.upper()}">\n  </head>\n  <body>\n'
            + "\n".join(p for p in parts if p) + "\n  </body>\n</html>\n")


def _apple_html(own: list[str], quote: Quote | None) -> str:
    body = "".join(f"<div>{_e(line)}</div>" if line else "<div><br></div>" for line in own)
    quoted = ""
    if quote is not None:
        cite = '<blockquote type="cite">'
        cited = _nested(_unquote(quote.lines), cite, "</blockquote>", ("<div>", "</div>"))
        quoted = f'<div><br><blockquote type="cite">{cited}</blockquote></div>'
    return ('<html><head><meta http-equiv="content-type" content="text/html; charset=utf-8"></head>'
            f"{_APPLE_BODY}{body}{quoted}</body></html>\n")


def _notes_html(own: list[str], quote: Quote | None) -> str:
    """Notes: font tags, the quoted mail's header block as label/value pairs."""
    body = "<br>\n".join(_e(line) for line in own)
    quoted = ""
    if quote is not None:
        fields = (h.partition(":") for h in quote.html_header)
        head = "<br>\n".join(f'<font size=1 color=#5f5f5f face="sans-serif">{_e(k)}:        </font>'
                             f'<font size=1 face="sans-serif">{_e(v.strip())}</font>' for k, _, v in fields)
        cited = "<br>\n".join(_e(line) for line in quote.lines)
        quoted = f"<br><br><br>\n{head}<br>\n<hr noshade>\n<br>\n<tt><font size=2>{cited}</font></tt>"
    return f'<font size=2 face="sans-serif">{body}</font>{quoted}\n'


def _roundcube_html(own: list[str], quote: Quote | None) -> str:
    body = "<br />\n".join(_e(line) for line in own)
    quoted = ""
    if quote is not None:
        cited = _nested(_unquote(quote.lines), "<blockquote>", "</blockquote>", ("", "<br />"))
        quoted = f"<p>{_e(quote.html_header[0])}</p>\n{_ROUNDCUBE_QUOTE}{cited}</blockquote>\n"
    return ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=UTF-8" /></head>'
            "<body style='font-size: 10pt; font-family: Verdana,Geneva,sans-serif'>\n"
            f"<p>{body}</p>\n{quoted}</body></html>\n")


def html_body(client: str, lang: str, charset: str, own: list[str], sig: list[str], quote: Quote | None,
              parent_mid: str = "") -> str:
    """The text/html alternative of a body, in the markup of the client."""
    if client in ("outlook", "owa", "outlook_mac"):
        return _outlook_html(lang, charset, [*own, *sig], quote)
    if client == "notes":
        return _notes_html([*own, *sig], quote)
    if client == "gmail":
        return _gmail_html([*own, *sig], quote)
    if client == "thunderbird":
        return _thunderbird_html(charset, own, sig, quote, parent_mid)
    if client in ("apple", "iphone"):
        return _apple_html([*own, *sig], quote)
    return _roundcube_html([*own, *sig], quote)


# --------------------------------------------------------------------------
# robots
# --------------------------------------------------------------------------
OUT_OF_OFFICE = {
    "de": ("Vielen Dank für Ihre Nachricht. Ich bin bis einschließlich {back} nicht im Büro und lese meine "
           "E-Mails nur unregelmäßig. In dringenden Fällen wenden Sie sich bitte an {deputy}.",
           "Ich bin derzeit auf Urlaub und ab {back} wieder erreichbar. Ihre Nachricht wird nicht "
           "weitergeleitet. Bei dringenden Anliegen erreichen Sie {deputy}.",
           "Danke für Ihre E-Mail! Aufgrund einer Dienstreise bin ich bis {back} nur eingeschränkt "
           "erreichbar."),
    "en": ("Thank you for your message. I am out of the office until {back} with limited access to e-mail. "
           "For urgent matters please contact {deputy}.",
           "I am currently on annual leave and will be back on {back}. Your message will not be forwarded; "
           "please contact {deputy} if it cannot wait.",
           "Thanks for your e-mail. I am travelling until {back} and will reply as soon as I can."),
}
OUT_OF_OFFICE_SUBJECT = {
    "de": ("Automatische Antwort: ", "Abwesenheitsnotiz: ", "Abwesend: ", "Out of Office: "),
    "en": ("Automatic reply: ", "Out of Office: ", "Auto: ", "Autoreply: "),
}


@dataclass(frozen=True)
class Mta:
    """How a mail server words a bounce. Templates take {mta} (reporting
    host), {remote}, {ip}, {bad} (failed address), {diag}, {received},
    {desk_host}, {domain}; subjects take {subject} (the returned mail's)."""

    software: str  # as in its Received line
    sender: str  # the From header; {addr} is the daemon's address
    local_part: str
    subjects: dict[str, str]
    notices: dict[str, str]
    unknown_user: str  # diagnostic codes
    mailbox_full: str
    html: bool = False  # sends its notice as multipart/alternative


_POSTFIX_NOTICE = """\
This is the mail system at host {mta}.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system

<{bad}>: host {remote}[{ip}] said:
    {diag} (in reply to RCPT TO command)
"""
_EXIM_NOTICE = """\
This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {bad}
    host {remote} [{ip}]
    SMTP error from remote mail server after RCPT TO:<{bad}>:
    {diag}
"""
_SENDMAIL_NOTICE = """\
The original message was received at {received}
from {desk_host}

   ----- The following addresses had permanent fatal errors -----
<{bad}>
    (reason: {diag})

   ----- Transcript of session follows -----
... while talking to {remote}.:
>>> RCPT To:<{bad}>
<<< {diag}
"""
_EXCHANGE_NOTICE = {
    "de": """\
Ihre Nachricht an {bad} konnte nicht zugestellt werden.

{bad} wurde nicht gefunden. Möglicherweise wurde die Adresse geändert oder gelöscht.

Diagnoseinformationen für Administratoren:

Generierender Server: {mta}

{bad}
Remote-Server hat „{diag}“ zurückgegeben.
""",
    "en": """\
Your message to {bad} couldn't be delivered.

{bad} wasn't found at {domain}.

Diagnostic information for administrators:

Generating server: {mta}

{bad}
Remote server returned '{diag}'
""",
}
MTAS: dict[str, Mta] = {
    "postfix": Mta(
        "Postfix", "{addr} (Mail Delivery System)", "MAILER-DAEMON",
        {"en": "Undelivered Mail Returned to Sender"}, {"en": _POSTFIX_NOTICE},
        "550 5.1.1 <{bad}>: Recipient address rejected: User unknown in virtual mailbox table",
        "552 5.2.2 <{bad}>: Recipient address rejected: Mailbox full",
    ),
    "exim": Mta(
        "Exim 4.97", "Mail Delivery System <{addr}>", "Mailer-Daemon",
        {"en": "Mail delivery failed: returning message to sender"}, {"en": _EXIM_NOTICE},
        "550 5.1.1 <{bad}>: Recipient address rejected: User unknown",
        "552 5.2.2 Mailbox quota exceeded",
    ),
    "sendmail": Mta(
        "8.17.2/8.17.2", "Mail Delivery Subsystem <{addr}>", "MAILER-DAEMON",
        {"en": "Returned mail: see transcript for details"}, {"en": _SENDMAIL_NOTICE},
        "550 5.1.1 <{bad}>... User unknown",
        "552 5.2.2 <{bad}>... Mailbox full",
    ),
    "exchange": Mta(
        "Microsoft SMTP Server", "Microsoft Outlook <{addr}>", "MAILER-DAEMON",
        {"de": "Unzustellbar: {subject}", "en": "Undeliverable: {subject}"}, _EXCHANGE_NOTICE,
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient {bad} not found by SMTP address lookup",
        "552 5.2.2 STOREDRV.Deliver; mailbox full",
        html=True,
    ),
}
