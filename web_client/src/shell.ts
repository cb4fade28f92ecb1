/** The page frame shared by every route: header (brand, account slot, language selector) and main. */
import { h } from './dom';
import { currentLang, LANGUAGE_NAMES, LANGUAGES, isLang, setLanguage } from './i18n';

export interface Shell {
  /** Right side of the header, for account actions. */
  account: HTMLElement;
  main: HTMLElement;
}

export function mountShell(root: HTMLElement): Shell {
  const select = h(
    'select',
    {
      testid: 'lang-select',
      i18nAttrs: { 'aria-label': 'app.language' },
      on: {
        change: () => {
          if (isLang(select.value)) void setLanguage(select.value);
        },
      },
    },
    ...LANGUAGES.map((l) => h('option', { attrs: { value: l, lang: l, selected: l === currentLang() } }, LANGUAGE_NAMES[l])),
  );
  select.value = currentLang();

  const account = h('div', { class: 'account' });
  const main = h('main', { attrs: { id: 'main', tabindex: -1 } });
  root.replaceChildren(
    h('a', { class: 'skip-link', i18n: 'app.skip_to_content', attrs: { href: '#main' } }),
    h(
      'header',
      { class: 'app-header' },
      h('a', { class: 'brand', attrs: { href: '/' } }, h('span', { i18n: 'app.name' })),
      h('div', { class: 'header-actions' }, account, select),
    ),
    main,
  );
  return { account, main };
}
