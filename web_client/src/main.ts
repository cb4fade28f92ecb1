/** Entry point: strings, the page frame, then the route (`/` or `/r/<room_id>`). */
import './styles.css';
import { h, replace } from './dom';
import { initI18n } from './i18n';
import { mountHome } from './home/page';
import { mountRoomPage } from './rooms/page';
import { mountShell } from './shell';

export type Route = { name: 'home' } | { name: 'room'; roomId: string } | { name: 'not_found' };

export function route(pathname: string): Route {
  if (pathname === '/' || pathname === '/index.html') return { name: 'home' };
  const m = /^\/r\/([^/]+)\/?$/.exec(pathname);
  if (m?.[1]) return { name: 'room', roomId: decodeURIComponent(m[1]) };
  return { name: 'not_found' };
}

async function main(): Promise<void> {
  await initI18n();
  const root = document.getElementById('app');
  if (!root) return;
  const shell = mountShell(root);
  const r = route(location.pathname);
  switch (r.name) {
    case 'home':
      await mountHome(shell);
      break;
    case 'room':
      await mountRoomPage(shell, r.roomId);
      break;
    case 'not_found':
      replace(
        shell.main,
        h('div', { class: 'card narrow center' }, h('h1', { i18n: 'app.not_found' }), h('a', { i18n: 'room.back_home', attrs: { href: '/' } })),
      );
  }
}

void main();
