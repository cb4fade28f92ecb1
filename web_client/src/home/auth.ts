/** Sign in and register forms for physicians. */
import { clearStatus, field, h, say, sayError, statusLine } from '../dom';
import { currentLang, t, type MsgKey } from '../i18n';
import { api, ApiError } from '../net/api';
import { PASSWORD_MAX, PASSWORD_MIN, type User } from '../net/protocol';

const FIELD_KEYS: Record<string, MsgKey> = {
  name: 'fields.name',
  email: 'fields.email',
  password: 'fields.password',
  specialty: 'fields.specialty',
  country: 'fields.country',
  languages: 'fields.languages',
};

/** Names of the fields a `validation_error` points at, translated where we know them. */
export function invalidFields(err: unknown): string[] {
  if (!(err instanceof ApiError) || err.code !== 'validation_error') return [];
  const names = new Set<string>();
  for (const d of err.details) {
    if (typeof d !== 'object' || d === null) continue;
    const rec = d as { field?: unknown; loc?: unknown };
    let name: unknown = rec.field;
    if (name === undefined && Array.isArray(rec.loc)) name = rec.loc.filter((x) => typeof x === 'string').at(-1);
    if (typeof name !== 'string') continue;
    const key = FIELD_KEYS[name];
    if (key) names.add(t(key));
  }
  return [...names];
}

function showError(status: HTMLElement, err: unknown): void {
  const fields = invalidFields(err);
  if (fields.length) say(status, 'errors.check_fields', 'error', { fields: fields.join(', ') });
  else sayError(status, err);
}

function input(name: string, type: string, extra: Record<string, string | number | boolean> = {}): HTMLInputElement {
  return h('input', { testid: `${name}-field`, attrs: { name, type, required: true, ...extra } });
}

export function authForms(onSignedIn: (me: User) => void): HTMLElement {
  // --- sign in
  const loginEmail = input('login-email', 'email', { autocomplete: 'username' });
  const loginPassword = input('login-password', 'password', { autocomplete: 'current-password' });
  const loginStatus = statusLine('login-status');
  const loginButton = h('button', { class: 'primary', testid: 'login-button', i18n: 'auth.sign_in', attrs: { type: 'submit' } });
  const loginForm = h(
    'form',
    {
      class: 'card auth-card',
      on: {
        submit: (ev) => {
          ev.preventDefault();
          loginButton.disabled = true;
          clearStatus(loginStatus);
          api
            .login({ email: loginEmail.value.trim(), password: loginPassword.value })
            .then(onSignedIn, (err: unknown) => {
              if (err instanceof ApiError && err.code === 'unauthorized') say(loginStatus, 'auth.bad_credentials', 'error');
              else showError(loginStatus, err);
            })
            .finally(() => {
              loginButton.disabled = false;
            });
        },
      },
    },
    h('h2', { i18n: 'auth.sign_in_title' }),
    field('fields.email', loginEmail),
    field('fields.password', loginPassword),
    loginStatus,
    h('div', { class: 'actions' }, loginButton),
  );

  // --- register
  const name = input('reg-name', 'text', { autocomplete: 'name', maxlength: 200 });
  const email = input('reg-email', 'email', { autocomplete: 'email' });
  const password = input('reg-password', 'password', {
    autocomplete: 'new-password',
    minlength: PASSWORD_MIN,
    maxlength: PASSWORD_MAX,
  });
  const specialty = input('reg-specialty', 'text', { maxlength: 200 });
  const country = input('reg-country', 'text', {
    autocomplete: 'country',
    minlength: 2,
    maxlength: 2,
    pattern: '[A-Za-z]{2}',
    autocapitalize: 'characters',
    class: 'short',
  });
  const languages = input('reg-languages', 'text', { autocomplete: 'off' });
  languages.value = currentLang();
  const regStatus = statusLine('register-status');
  const regButton = h('button', { class: 'primary', testid: 'register-button', i18n: 'auth.register', attrs: { type: 'submit' } });
  const regForm = h(
    'form',
    {
      class: 'card auth-card',
      on: {
        submit: (ev) => {
          ev.preventDefault();
          clearStatus(regStatus);
          if (password.value.length < PASSWORD_MIN) {
            say(regStatus, 'auth.password_too_short', 'error', { min: PASSWORD_MIN });
            password.focus();
            return;
          }
          regButton.disabled = true;
          api
            .register({
              name: name.value.trim(),
              email: email.value.trim(),
              password: password.value,
              specialty: specialty.value.trim(),
              country: country.value.trim().toUpperCase(),
              languages: parseLanguages(languages.value),
            })
            .then(onSignedIn, (err: unknown) => showError(regStatus, err))
            .finally(() => {
              regButton.disabled = false;
            });
        },
      },
    },
    h('h2', { i18n: 'auth.register_title' }),
    field('fields.name', name),
    field('fields.email', email),
    field('fields.password', password, 'auth.password_hint'),
    field('fields.specialty', specialty, 'auth.specialty_hint'),
    field('fields.country', country, 'auth.country_hint'),
    field('fields.languages', languages, 'auth.languages_hint'),
    regStatus,
    h('div', { class: 'actions' }, regButton),
  );

  return h(
    'div',
    { class: 'auth' },
    h('div', { class: 'intro' }, h('h1', { i18n: 'home.welcome_title' }), h('p', { class: 'lead', i18n: 'home.welcome_body' })),
    h('div', { class: 'auth-grid' }, loginForm, regForm),
  );
}

/** "en, fr" / "EN FR" -> ["en", "fr"]. */
export function parseLanguages(value: string): string[] {
  const out: string[] = [];
  for (const part of value.split(/[\s,;]+/)) {
    const tag = part.trim().toLowerCase();
    if (tag && !out.includes(tag)) out.push(tag);
  }
  return out;
}
