/**
 * The text label prompt: a small form over the image where the label goes (text and font
 * size). Enter or the button confirms, Escape or the other button cancels. One at a time.
 */
import { h } from '../dom';
import { bindText } from '../i18n';
import { cleanText, DEFAULT_FONT_SIZE, FONT_SIZES } from './tools';

export interface TextValue {
  text: string;
  fontSize: number;
}

export class TextForm {
  readonly el: HTMLFormElement;
  private readonly input: HTMLInputElement;
  private readonly size: HTMLSelectElement;
  private readonly okBtn: HTMLButtonElement;
  private resolve: ((v: TextValue | null) => void) | null = null;
  private lastSize: number = DEFAULT_FONT_SIZE;

  constructor() {
    this.input = h('input', {
      testid: 'annotation-text-input',
      attrs: { type: 'text', maxlength: 2000, autocomplete: 'off', required: true },
      i18nAttrs: { 'aria-label': 'annotations.text_label', placeholder: 'annotations.text_placeholder' },
    });
    this.size = h('select', { testid: 'annotation-text-size', i18nAttrs: { 'aria-label': 'annotations.text_size' } });
    for (const s of FONT_SIZES) this.size.appendChild(h('option', { attrs: { value: s } }, String(s)));
    this.okBtn = h('button', { class: 'small primary', testid: 'annotation-text-ok', i18n: 'annotations.text_ok', attrs: { type: 'submit' } });
    const cancel = h('button', {
      class: 'small',
      i18n: 'annotations.text_cancel',
      attrs: { type: 'button' },
      on: { click: () => this.close(null) },
    });
    this.el = h(
      'form',
      {
        class: 'annotation-text-form',
        testid: 'annotation-text-form',
        attrs: { hidden: true },
        on: {
          submit: (ev) => {
            ev.preventDefault();
            const text = cleanText(this.input.value);
            if (!text) {
              this.input.focus();
              return;
            }
            this.lastSize = Number(this.size.value) || DEFAULT_FONT_SIZE;
            this.close({ text, fontSize: this.lastSize });
          },
          keydown: (ev) => {
            if (ev.key === 'Escape') {
              ev.preventDefault();
              ev.stopPropagation();
              this.close(null);
            }
            // keys typed here are not the panel's shortcuts
            else ev.stopPropagation();
          },
        },
      },
      this.input,
      this.size,
      this.okBtn,
      cancel,
    );
  }

  get open(): boolean {
    return this.resolve !== null;
  }

  /**
   * Ask for a label at (left, top), CSS pixels inside the positioned stage. Resolves with
   * the label, or null when cancelled (or replaced by another prompt).
   */
  ask(left: number, top: number, initial?: TextValue, okKey: 'annotations.text_ok' | 'annotations.text_save' = 'annotations.text_ok'): Promise<TextValue | null> {
    this.close(null);
    this.input.value = initial?.text ?? '';
    this.size.value = String(initial?.fontSize ?? this.lastSize);
    bindText(this.okBtn, okKey);
    this.el.style.left = `${Math.max(0, left)}px`;
    this.el.style.top = `${Math.max(0, top)}px`;
    this.el.hidden = false;
    this.input.focus();
    this.input.select();
    return new Promise((resolve) => {
      this.resolve = resolve;
    });
  }

  /** Close the form (null: cancelled). */
  close(value: TextValue | null): void {
    const resolve = this.resolve;
    this.resolve = null;
    this.el.hidden = true;
    resolve?.(value);
  }
}
