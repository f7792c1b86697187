"""The portal's words in German and English, and which language a request
gets (SPEC §6): ``?lang=de|en`` (remembered in a cookie), the cookie, the
signed-in account's language, ``Accept-Language``, ``desk.default_locale``.
Templates call ``t("key")``; a missing key is a bug the tests catch, shown
as the key itself rather than a crash."""

from __future__ import annotations

LOCALES = ("de", "en")

TEXTS: dict[str, dict[str, str]] = {
    "de": {
        "lang.de": "Deutsch",
        "lang.en": "English",
        "nav.login": "Anmelden",
        "nav.signup": "Registrieren",
        "nav.logout": "Abmelden",
        "nav.profile": "Profil",
        "nav.home": "Übersicht",
        "nav.skip": "Zum Inhalt",
        "footer.text": "Sie erreichen uns auch per E-Mail an",
        "home.title": "Willkommen beim {desk}",
        "home.lead": "Hier melden Sie Anfragen, verfolgen deren Stand und antworten dem Support-Team.",
        "home.login_title": "Sie haben ein Konto?",
        "home.login_text": "Melden Sie sich mit Ihrer E-Mail-Adresse und Ihrem Passwort an.",
        "home.signup_title": "Neu hier?",
        "home.signup_text": "Registrieren Sie sich mit Ihrer E-Mail-Adresse. Anfragen, die Sie uns schon per "
        "E-Mail geschickt haben, finden Sie danach hier.",
        "home.greeting": "Guten Tag, {name}",
        "home.requests": "Ihre Anfragen",
        "home.no_requests": "Sie haben noch keine Anfragen. Schreiben Sie uns eine E-Mail an {address}.",
        "col.key": "Nr.",
        "col.summary": "Zusammenfassung",
        "col.status": "Status",
        "col.reporter": "Gemeldet von",
        "col.updated": "Aktualisiert",
        "status.waiting_for_support": "Wartet auf Support",
        "status.waiting_for_customer": "Wartet auf Sie",
        "status.resolved": "Gelöst",
        "status.closed": "Geschlossen",
        "field.email": "E-Mail-Adresse",
        "field.password": "Passwort",
        "field.password_new": "Neues Passwort",
        "field.password_confirm": "Passwort wiederholen",
        "field.password_current": "Aktuelles Passwort",
        "field.name": "Ihr Name",
        "field.language": "Sprache (auch für E-Mails)",
        "hint.password": "Mindestens 10 Zeichen.",
        "signup.title": "Registrieren",
        "signup.lead": "Geben Sie Ihre E-Mail-Adresse ein. Wir schicken Ihnen einen Link, mit dem Sie die "
        "Registrierung abschließen.",
        "signup.submit": "Link anfordern",
        "signup.have_account": "Sie haben schon ein Konto?",
        "sent.title": "Bitte sehen Sie in Ihr Postfach",
        "sent.signup": "Wenn die Adresse {email} registriert werden kann, erhalten Sie in wenigen Minuten eine "
        "E-Mail mit einem Link. Er ist {hours} Stunden gültig.",
        "sent.reset": "Wenn zu {email} ein Konto besteht, erhalten Sie in wenigen Minuten eine E-Mail mit einem "
        "Link zum Festlegen eines neuen Passworts.",
        "sent.spam": "Keine E-Mail erhalten? Sehen Sie bitte auch im Spam-Ordner nach.",
        "confirm.title": "Registrierung abschließen",
        "confirm.lead": "Legen Sie Ihren Namen und ein Passwort für {email} fest.",
        "confirm.submit": "Registrierung abschließen",
        "invalid.title": "Dieser Link ist nicht mehr gültig",
        "invalid.text": "Der Link wurde schon verwendet oder ist abgelaufen. Fordern Sie einfach einen neuen an.",
        "invalid.submit": "Neuen Link anfordern",
        "login.title": "Anmelden",
        "login.submit": "Anmelden",
        "login.forgot": "Passwort vergessen?",
        "login.no_account": "Noch kein Konto?",
        "reset.title": "Passwort vergessen",
        "reset.lead": "Geben Sie Ihre E-Mail-Adresse ein. Wir schicken Ihnen einen Link, mit dem Sie ein neues "
        "Passwort festlegen.",
        "reset.submit": "Link anfordern",
        "reset_confirm.title": "Neues Passwort festlegen",
        "reset_confirm.submit": "Passwort speichern",
        "reset_done": "Ihr neues Passwort ist gespeichert. Bitte melden Sie sich an.",
        "profile.title": "Ihr Profil",
        "profile.details": "Name und Sprache",
        "profile.password": "Passwort ändern",
        "profile.save": "Speichern",
        "profile.change_password": "Passwort ändern",
        "profile.saved": "Ihre Angaben sind gespeichert.",
        "profile.password_saved": "Ihr Passwort ist geändert. Andere Sitzungen wurden abgemeldet.",
        "profile.email": "Angemeldet als {email}",
        "welcome": "Willkommen! Ihre Registrierung ist abgeschlossen.",
        "logged_out": "Sie sind abgemeldet.",
        "error.email": "Bitte geben Sie eine gültige E-Mail-Adresse ein.",
        "error.name": "Bitte geben Sie Ihren Namen ein.",
        "error.password_short": "Das Passwort braucht mindestens 10 Zeichen.",
        "error.password_long": "Das Passwort ist zu lang.",
        "error.password_mismatch": "Die Passwörter stimmen nicht überein.",
        "error.password_current": "Das aktuelle Passwort ist nicht richtig.",
        "error.login": "E-Mail-Adresse oder Passwort sind nicht richtig.",
        "error.rate": "Zu viele Versuche. Bitte warten Sie etwas und versuchen Sie es dann erneut.",
        "error.csrf": "Das Formular ist abgelaufen. Bitte senden Sie es noch einmal.",
        "error.form": "Bitte prüfen Sie die markierten Felder.",
        "error.too_large": "Die Anfrage ist zu groß.",
        "page.404.title": "Seite nicht gefunden",
        "page.404.text": "Diese Seite gibt es nicht, oder Sie dürfen sie nicht sehen.",
        "page.500.title": "Etwas ist schiefgegangen",
        "page.500.text": "Ein Fehler ist aufgetreten. Bitte versuchen Sie es später noch einmal.",
        "page.back": "Zur Übersicht",
    },
    "en": {
        "lang.de": "Deutsch",
        "lang.en": "English",
        "nav.login": "Sign in",
        "nav.signup": "Register",
        "nav.logout": "Sign out",
        "nav.profile": "Profile",
        "nav.home": "Overview",
        "nav.skip": "Skip to content",
        "footer.text": "You can also reach us by e-mail at",
        "home.title": "Welcome to {desk}",
        "home.lead": "Report requests here, follow their progress and answer the support team.",
        "home.login_title": "You have an account?",
        "home.login_text": "Sign in with your e-mail address and your password.",
        "home.signup_title": "New here?",
        "home.signup_text": "Register with your e-mail address. Requests you have already sent us by e-mail "
        "will be waiting for you.",
        "home.greeting": "Hello, {name}",
        "home.requests": "Your requests",
        "home.no_requests": "You have no requests yet. Write to us at {address}.",
        "col.key": "No.",
        "col.summary": "Summary",
        "col.status": "Status",
        "col.reporter": "Reported by",
        "col.updated": "Updated",
        "status.waiting_for_support": "Waiting for support",
        "status.waiting_for_customer": "Waiting for you",
        "status.resolved": "Resolved",
        "status.closed": "Closed",
        "field.email": "E-mail address",
        "field.password": "Password",
        "field.password_new": "New password",
        "field.password_confirm": "Repeat the password",
        "field.password_current": "Current password",
        "field.name": "Your name",
        "field.language": "Language (for e-mails too)",
        "hint.password": "At least 10 characters.",
        "signup.title": "Register",
        "signup.lead": "Enter your e-mail address. We will send you a link to complete your registration.",
        "signup.submit": "Send me the link",
        "signup.have_account": "Already have an account?",
        "sent.title": "Please check your inbox",
        "sent.signup": "If {email} can be registered, you will receive an e-mail with a link in a few minutes. "
        "It is valid for {hours} hours.",
        "sent.reset": "If there is an account for {email}, you will receive an e-mail with a link to choose a "
        "new password in a few minutes.",
        "sent.spam": "No e-mail? Please look in your spam folder too.",
        "confirm.title": "Complete your registration",
        "confirm.lead": "Choose your name and a password for {email}.",
        "confirm.submit": "Complete registration",
        "invalid.title": "This link is no longer valid",
        "invalid.text": "The link was already used or has expired. Simply request a new one.",
        "invalid.submit": "Send me a new link",
        "login.title": "Sign in",
        "login.submit": "Sign in",
        "login.forgot": "Forgot your password?",
        "login.no_account": "No account yet?",
        "reset.title": "Forgot your password",
        "reset.lead": "Enter your e-mail address. We will send you a link to choose a new password.",
        "reset.submit": "Send me the link",
        "reset_confirm.title": "Choose a new password",
        "reset_confirm.submit": "Save the password",
        "reset_done": "Your new password is saved. Please sign in.",
        "profile.title": "Your profile",
        "profile.details": "Name and language",
        "profile.password": "Change your password",
        "profile.save": "Save",
        "profile.change_password": "Change password",
        "profile.saved": "Your details are saved.",
        "profile.password_saved": "Your password is changed. Your other sessions were signed out.",
        "profile.email": "Signed in as {email}",
        "welcome": "Welcome! Your registration is complete.",
        "logged_out": "You are signed out.",
        "error.email": "Please enter a valid e-mail address.",
        "error.name": "Please enter your name.",
        "error.password_short": "The password needs at least 10 characters.",
        "error.password_long": "The password is too long.",
        "error.password_mismatch": "The passwords do not match.",
        "error.password_current": "The current password is not right.",
        "error.login": "The e-mail address or the password is not right.",
        "error.rate": "Too many attempts. Please wait a while and try again.",
        "error.csrf": "The form has expired. Please send it again.",
        "error.form": "Please check the marked fields.",
        "error.too_large": "The request is too large.",
        "page.404.title": "Page not found",
        "page.404.text": "This page does not exist, or you may not see it.",
        "page.500.title": "Something went wrong",
        "page.500.text": "An error occurred. Please try again later.",
        "page.back": "Back to the overview",
    },
}


def translate(locale: str, key: str, **values: object) -> str:
    text = TEXTS.get(locale, TEXTS["en"]).get(key)
    if text is None:
        return key
    return text.format(**values) if values else text


def from_accept_language(header: str | None) -> str | None:
    """The first of our languages in an ``Accept-Language`` header, by its
    q-values (``de-AT,de;q=0.9,en;q=0.8`` -> ``de``)."""
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for pos, part in enumerate(header.split(",")[:20]):
        lang, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        base = lang.strip().lower().split("-")[0]
        if base in LOCALES and q > 0:
            ranked.append((-q, pos, base))
    return min(ranked)[2] if ranked else None
